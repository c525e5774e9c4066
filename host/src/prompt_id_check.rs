//! Client-supplied prompt ids: the host accepts what the current ComfyUI accepts (a UUID in
//! canonical lowercase hyphenated form, `str(uuid.UUID(v)) == v`, ComfyUI's
//! `comfy_execution.jobs.validate_job_id`) and refuses anything else before any plugin, job
//! record or ComfyUI sees it, with ComfyUI's own `invalid_prompt_id` answer. Ids with path or
//! query characters (`../../x`, `a/b`, `q?x=1`) could otherwise never be looked up in
//! ComfyUI's history and would be followed forever. (Ids that are not strings at all are
//! refused with the body checks.)

use comfyhost_protocol::ComfyErrorBody;

/// `Err` with ComfyUI's 400 body when `id` is not an id ComfyUI would accept.
pub fn check(id: &str) -> Result<(), Box<ComfyErrorBody>> {
    match uuid::Uuid::try_parse(id) {
        Ok(parsed) if parsed.hyphenated().to_string() == id => Ok(()),
        _ => Err(Box::new(ComfyErrorBody::new(
            "invalid_prompt_id",
            "prompt_id must be a valid UUID",
            "prompt_id must be a UUID string in canonical lowercase hyphenated form; omit it to \
             let the server generate one",
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_canonical_uuids_are_accepted() {
        assert!(check("4cb72d02-75df-4ec6-8808-7a3c48fbd119").is_ok());
        for bad in [
            "../../x",
            "a/b",
            "q?x=1",
            "",
            "4CB72D02-75DF-4EC6-8808-7A3C48FBD119",
            "4cb72d0275df4ec688087a3c48fbd119",
            "{4cb72d02-75df-4ec6-8808-7a3c48fbd119}",
            "urn:uuid:4cb72d02-75df-4ec6-8808-7a3c48fbd119",
        ] {
            let err = check(bad).expect_err(bad);
            assert_eq!(err.error.kind, "invalid_prompt_id");
        }
    }
}

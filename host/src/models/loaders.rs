//! ComfyUI loader nodes: which input names a file in which model folder, and the widget order
//! of those inputs in UI-format workflows (`widgets_values`), from ComfyUI's `nodes.py`.

/// `(class_type, widget names in widgets_values order, model inputs with their folder key)`.
type LoaderRow = (
    &'static str,
    &'static [&'static str],
    &'static [(&'static str, &'static str)],
);

const LOADERS: &[LoaderRow] = &[
    (
        "CheckpointLoaderSimple",
        &["ckpt_name"],
        &[("ckpt_name", "checkpoints")],
    ),
    (
        "CheckpointLoader",
        &["config_name", "ckpt_name"],
        &[("config_name", "configs"), ("ckpt_name", "checkpoints")],
    ),
    (
        "unCLIPCheckpointLoader",
        &["ckpt_name"],
        &[("ckpt_name", "checkpoints")],
    ),
    (
        "ImageOnlyCheckpointLoader",
        &["ckpt_name"],
        &[("ckpt_name", "checkpoints")],
    ),
    (
        "LoraLoader",
        &["lora_name", "strength_model", "strength_clip"],
        &[("lora_name", "loras")],
    ),
    (
        "LoraLoaderModelOnly",
        &["lora_name", "strength_model"],
        &[("lora_name", "loras")],
    ),
    ("VAELoader", &["vae_name"], &[("vae_name", "vae")]),
    (
        "UNETLoader",
        &["unet_name", "weight_dtype"],
        &[("unet_name", "diffusion_models")],
    ),
    (
        "CLIPLoader",
        &["clip_name", "type", "device"],
        &[("clip_name", "text_encoders")],
    ),
    (
        "DualCLIPLoader",
        &["clip_name1", "clip_name2", "type", "device"],
        &[
            ("clip_name1", "text_encoders"),
            ("clip_name2", "text_encoders"),
        ],
    ),
    (
        "TripleCLIPLoader",
        &["clip_name1", "clip_name2", "clip_name3"],
        &[
            ("clip_name1", "text_encoders"),
            ("clip_name2", "text_encoders"),
            ("clip_name3", "text_encoders"),
        ],
    ),
    (
        "QuadrupleCLIPLoader",
        &["clip_name1", "clip_name2", "clip_name3", "clip_name4"],
        &[
            ("clip_name1", "text_encoders"),
            ("clip_name2", "text_encoders"),
            ("clip_name3", "text_encoders"),
            ("clip_name4", "text_encoders"),
        ],
    ),
    (
        "CLIPVisionLoader",
        &["clip_name"],
        &[("clip_name", "clip_vision")],
    ),
    (
        "ControlNetLoader",
        &["control_net_name"],
        &[("control_net_name", "controlnet")],
    ),
    (
        "DiffControlNetLoader",
        &["control_net_name"],
        &[("control_net_name", "controlnet")],
    ),
    (
        "UpscaleModelLoader",
        &["model_name"],
        &[("model_name", "upscale_models")],
    ),
    (
        "StyleModelLoader",
        &["style_model_name"],
        &[("style_model_name", "style_models")],
    ),
    (
        "GLIGENLoader",
        &["gligen_name"],
        &[("gligen_name", "gligen")],
    ),
    (
        "HypernetworkLoader",
        &["hypernetwork_name", "strength"],
        &[("hypernetwork_name", "hypernetworks")],
    ),
    (
        "PhotoMakerLoader",
        &["photomaker_model_name"],
        &[("photomaker_model_name", "photomaker")],
    ),
];

/// Input names that denote a model file whatever the node class (custom loaders follow the
/// core naming), used when a rejection names a class this table does not know.
const INPUT_FALLBACK: &[(&str, &str)] = &[
    ("ckpt_name", "checkpoints"),
    ("lora_name", "loras"),
    ("vae_name", "vae"),
    ("unet_name", "diffusion_models"),
    ("clip_name", "text_encoders"),
    ("clip_name1", "text_encoders"),
    ("clip_name2", "text_encoders"),
    ("control_net_name", "controlnet"),
    ("upscale_model", "upscale_models"),
];

/// The model folder `class_type.input` reads from.
pub fn folder_for(class_type: &str, input: &str) -> Option<&'static str> {
    LOADERS
        .iter()
        .find(|(c, _, _)| *c == class_type)
        .and_then(|(_, _, inputs)| inputs.iter().find(|(i, _)| *i == input).map(|(_, f)| *f))
        .or_else(|| {
            INPUT_FALLBACK
                .iter()
                .find(|(i, _)| *i == input)
                .map(|(_, f)| *f)
        })
}

/// Widget names of a known loader, in `widgets_values` order.
pub fn widget_names(class_type: &str) -> Option<&'static [&'static str]> {
    LOADERS
        .iter()
        .find(|(c, _, _)| *c == class_type)
        .map(|(_, w, _)| *w)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table_lookups() {
        assert_eq!(
            folder_for("DualCLIPLoader", "clip_name2"),
            Some("text_encoders")
        );
        assert_eq!(folder_for("UNETLoader", "weight_dtype"), None);
        assert_eq!(folder_for("SomeCustomLoader", "lora_name"), Some("loras"));
        assert_eq!(folder_for("KSampler", "sampler_name"), None);
        assert_eq!(widget_names("LoraLoader").map(|w| w[0]), Some("lora_name"));
    }
}

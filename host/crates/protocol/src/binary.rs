//! Binary WebSocket frames: a 4-byte big-endian event type, then the payload.

/// Event types ComfyUI sends as binary frames (`protocol.py` BinaryEventTypes).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BinaryEventType {
    PreviewImage,
    UnencodedPreviewImage,
    Text,
    PreviewImageWithMetadata,
    Other(u32),
}

impl BinaryEventType {
    pub fn from_u32(v: u32) -> Self {
        match v {
            1 => Self::PreviewImage,
            2 => Self::UnencodedPreviewImage,
            3 => Self::Text,
            4 => Self::PreviewImageWithMetadata,
            o => Self::Other(o),
        }
    }
}

/// Split a binary frame into its event type and payload; `None` when shorter than 4 bytes.
pub fn split_frame(frame: &[u8]) -> Option<(BinaryEventType, &[u8])> {
    let (head, rest) = frame.split_first_chunk::<4>()?;
    Some((BinaryEventType::from_u32(u32::from_be_bytes(*head)), rest))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splits_preview_frames() {
        let frame = [0, 0, 0, 1, 0, 0, 0, 2, 0xff, 0xd8];
        let (t, rest) = split_frame(&frame).unwrap();
        assert_eq!(t, BinaryEventType::PreviewImage);
        assert_eq!(rest, &[0, 0, 0, 2, 0xff, 0xd8]);
        assert_eq!(split_frame(&[0, 1]), None);
    }
}

//! Values flowing between simulated nodes. Images are batches of solid-colour frames, which is
//! enough to reproduce ComfyUI's shapes, file outputs and shape errors.

use crate::execution::tensor_repr;

/// A `[B, H, W, C]` image batch, each frame one colour (RGBA, 0..1).
#[derive(Debug, Clone, PartialEq)]
pub struct Image {
    /// Height.
    pub height: u32,
    /// Width.
    pub width: u32,
    /// Channels (3 or 4).
    pub channels: u32,
    /// One colour per batch entry.
    pub frames: Vec<[f32; 4]>,
}

/// A `[B, H, W]` mask, each frame one value.
#[derive(Debug, Clone, PartialEq)]
pub struct Mask {
    /// Height.
    pub height: u32,
    /// Width.
    pub width: u32,
    /// One value per batch entry.
    pub frames: Vec<f32>,
}

/// A latent `{"samples": [B, 4, H/8, W/8]}`.
#[derive(Debug, Clone, PartialEq)]
pub struct Latent {
    /// Latent height (pixels / 8).
    pub height: u32,
    /// Latent width (pixels / 8).
    pub width: u32,
    /// Batch size.
    pub batch: u32,
    /// A seed-derived colour the decoder turns into pixels.
    pub tint: [f32; 4],
}

/// A value on a node output slot.
#[derive(Debug, Clone, PartialEq)]
pub enum SimValue {
    /// `IMAGE`.
    Image(Image),
    /// `MASK`.
    Mask(Mask),
    /// `LATENT`.
    Latent(Latent),
    /// `MODEL` (name of the checkpoint it came from).
    Model(String),
    /// `CLIP`.
    Clip(String),
    /// `VAE`.
    Vae(String),
    /// `CONDITIONING` (the encoded text).
    Conditioning(String),
    /// A widget value passed through (`*` outputs).
    Json(serde_json::Value),
}

impl SimValue {
    /// Python `str()` of the value, as `current_inputs` in `execution_error` shows it.
    pub fn python_str(&self) -> String {
        match self {
            SimValue::Image(i) => tensor_repr::image(i),
            SimValue::Mask(m) => tensor_repr::mask(m),
            SimValue::Latent(l) => format!("{{'samples': {}}}", tensor_repr::latent(l)),
            SimValue::Model(_) => {
                "<comfy.model_patcher.ModelPatcher object at 0x7f3a2c1d5e10>".into()
            }
            SimValue::Clip(_) => "<comfy.sd.CLIP object at 0x7f3a2c1d6a50>".into(),
            SimValue::Vae(_) => "<comfy.sd.VAE object at 0x7f3a2c1d7b90>".into(),
            SimValue::Conditioning(t) => format!(
                "[[tensor(...), {{'pooled_output': tensor(...), 'text': {}}}]]",
                crate::pyfmt::str_repr(t)
            ),
            SimValue::Json(v) => crate::pyfmt::py_str(v),
        }
    }
}

/// Splits ComfyUI's annotated file names: `"a.png [output]"` → `("a.png", Some("output"))`.
pub fn annotated_name(name: &str) -> (&str, Option<&'static str>) {
    for (suffix, kind) in [
        (" [output]", "output"),
        (" [input]", "input"),
        (" [temp]", "temp"),
    ] {
        if let Some(stripped) = name.strip_suffix(suffix) {
            return (stripped, Some(kind));
        }
    }
    (name, None)
}

/// RGB of ComfyUI's `EmptyImage` `color` integer (`0xRRGGBB`).
pub fn color_from_int(color: i64) -> [f32; 4] {
    let c = color.clamp(0, 0xff_ffff);
    [
        ((c >> 16) & 0xff) as f32 / 255.0,
        ((c >> 8) & 0xff) as f32 / 255.0,
        (c & 0xff) as f32 / 255.0,
        1.0,
    ]
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn annotated_names_and_colors() {
        assert_eq!(annotated_name("a.png [temp]"), ("a.png", Some("temp")));
        assert_eq!(annotated_name("a.png"), ("a.png", None));
        assert_eq!(color_from_int(0xff0000), [1.0, 0.0, 0.0, 1.0]);
    }
}

//! Which input of which loader node names a file in which ComfyUI model folder
//! (ComfyUI `nodes.py` / `comfy_extras`, folder keys from `folder_paths.py`).

/// One `(class_type, input name) -> folder key` rule.
#[derive(Debug, Clone, PartialEq, Eq, serde::Deserialize)]
pub struct LoaderInput {
    /// Node class, e.g. `CheckpointLoaderSimple`.
    pub class_type: String,
    /// Input holding the file name, e.g. `ckpt_name`.
    pub input: String,
    /// ComfyUI model folder key, e.g. `checkpoints`.
    pub folder: String,
}

/// Core ComfyUI loaders.
pub const CORE_LOADERS: &[(&str, &str, &str)] = &[
    ("CheckpointLoaderSimple", "ckpt_name", "checkpoints"),
    ("CheckpointLoader", "ckpt_name", "checkpoints"),
    ("CheckpointLoader", "config_name", "configs"),
    ("unCLIPCheckpointLoader", "ckpt_name", "checkpoints"),
    ("ImageOnlyCheckpointLoader", "ckpt_name", "checkpoints"),
    ("LoraLoader", "lora_name", "loras"),
    ("LoraLoaderModelOnly", "lora_name", "loras"),
    ("VAELoader", "vae_name", "vae"),
    ("UNETLoader", "unet_name", "diffusion_models"),
    ("CLIPLoader", "clip_name", "text_encoders"),
    ("DualCLIPLoader", "clip_name1", "text_encoders"),
    ("DualCLIPLoader", "clip_name2", "text_encoders"),
    ("TripleCLIPLoader", "clip_name1", "text_encoders"),
    ("TripleCLIPLoader", "clip_name2", "text_encoders"),
    ("TripleCLIPLoader", "clip_name3", "text_encoders"),
    ("QuadrupleCLIPLoader", "clip_name1", "text_encoders"),
    ("QuadrupleCLIPLoader", "clip_name2", "text_encoders"),
    ("QuadrupleCLIPLoader", "clip_name3", "text_encoders"),
    ("QuadrupleCLIPLoader", "clip_name4", "text_encoders"),
    ("CLIPVisionLoader", "clip_name", "clip_vision"),
    ("ControlNetLoader", "control_net_name", "controlnet"),
    ("DiffControlNetLoader", "control_net_name", "controlnet"),
    ("UpscaleModelLoader", "model_name", "upscale_models"),
    ("StyleModelLoader", "style_model_name", "style_models"),
    ("GLIGENLoader", "gligen_name", "gligen"),
    ("HypernetworkLoader", "hypernetwork_name", "hypernetworks"),
    ("PhotoMakerLoader", "photomaker_model_name", "photomaker"),
];

/// The folder for `class_type.input`, from the core table or the configured extras.
pub fn folder_for<'a>(extra: &'a [LoaderInput], class_type: &str, input: &str) -> Option<&'a str> {
    extra
        .iter()
        .find(|l| l.class_type == class_type && l.input == input)
        .map(|l| l.folder.as_str())
        .or_else(|| {
            CORE_LOADERS
                .iter()
                .find(|(c, i, _)| *c == class_type && *i == input)
                .map(|(_, _, f)| *f)
        })
}

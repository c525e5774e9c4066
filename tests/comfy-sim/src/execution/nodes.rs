//! Behaviour of each simulated node class.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::execution::progress::Progress;
use crate::execution::values::{Image, Latent, Mask, SimValue, annotated_name, color_from_int};
use crate::png;

/// Frames common to every node failure traceback (recorded from 0.3.64).
const TB_PREFIX: [&str; 4] = [
    "  File \"/opt/comfy/ComfyUI/execution.py\", line 496, in execute\n    output_data, output_ui, has_subgraph, has_pending_tasks = await get_output_data(prompt_id, unique_id, obj, input_data_all, execution_block_cb=execution_block_cb, pre_execute_cb=pre_execute_cb, hidden_inputs=hidden_inputs)\n                                                              ^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^\n",
    "  File \"/opt/comfy/ComfyUI/execution.py\", line 315, in get_output_data\n    return_values = await _async_map_node_over_list(prompt_id, unique_id, obj, input_data_all, obj.FUNCTION, allow_interrupt=True, execution_block_cb=execution_block_cb, pre_execute_cb=pre_execute_cb, hidden_inputs=hidden_inputs)\n                    ^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^\n",
    "  File \"/opt/comfy/ComfyUI/execution.py\", line 289, in _async_map_node_over_list\n    await process_inputs(input_dict, i)\n",
    "  File \"/opt/comfy/ComfyUI/execution.py\", line 277, in process_inputs\n    result = f(**inputs)\n             ^^^^^^^^^^^\n",
];

/// A Python exception raised by a node.
#[derive(Debug, Clone)]
pub struct Failure {
    /// `exception_type` (`full_type_name`).
    pub exception_type: String,
    /// `str(ex)` (the engine appends ComfyUI's trailing newline).
    pub message: String,
    /// `traceback.format_tb` lines.
    pub traceback: Vec<String>,
}

impl Failure {
    fn new(exception_type: &str, message: impl Into<String>, last_frame: &str) -> Self {
        let mut traceback: Vec<String> = TB_PREFIX.iter().map(|s| s.to_string()).collect();
        traceback.push(last_frame.to_string());
        Self {
            exception_type: exception_type.into(),
            message: message.into(),
            traceback,
        }
    }
}

/// Why a node did not produce outputs.
#[derive(Debug, Clone)]
pub enum NodeError {
    /// `InterruptProcessingException`.
    Interrupted,
    /// Any other exception.
    Failed(Failure),
}

impl From<Failure> for NodeError {
    fn from(f: Failure) -> Self {
        NodeError::Failed(f)
    }
}

/// What a node returned.
#[derive(Debug, Clone, Default)]
pub struct NodeOutput {
    /// Output slots.
    pub values: Vec<SimValue>,
    /// The `ui` dict, if any (`executed.output` and history `outputs`).
    pub ui: Option<Value>,
}

/// Everything a node may use while running.
pub struct NodeCtx<'p, 'a> {
    /// Node id.
    pub node_id: &'p str,
    /// Class name.
    pub class_type: &'p str,
    /// Resolved inputs by name.
    pub inputs: &'p HashMap<String, SimValue>,
    /// The whole prompt (embedded in saved PNGs).
    pub prompt: &'p Value,
    /// `extra_data.extra_pnginfo`.
    pub extra_pnginfo: Option<&'p Value>,
    /// Progress reporting.
    pub progress: &'p mut Progress<'a>,
}

impl NodeCtx<'_, '_> {
    fn json(&self, name: &str) -> Value {
        match self.inputs.get(name) {
            Some(SimValue::Json(v)) => v.clone(),
            _ => Value::Null,
        }
    }
    fn int(&self, name: &str) -> i64 {
        let v = self.json(name);
        v.as_i64()
            .or_else(|| v.as_u64().map(|u| u as i64))
            .or_else(|| v.as_f64().map(|f| f as i64))
            .unwrap_or(0)
    }
    fn float(&self, name: &str) -> f64 {
        self.json(name).as_f64().unwrap_or(0.0)
    }
    fn string(&self, name: &str) -> String {
        crate::pyfmt::py_str(&self.json(name))
    }
    fn wrong_type(&self, name: &str, want: &str) -> Failure {
        let got = match self.inputs.get(name) {
            Some(SimValue::Json(v)) => crate::pyfmt::py_type_name(v).to_string(),
            Some(other) => format!("{other:?}")
                .split('(')
                .next()
                .unwrap_or("object")
                .to_string(),
            None => "NoneType".into(),
        };
        Failure::new(
            "AttributeError",
            format!("'{got}' object has no attribute '{want}'"),
            &format!(
                "  File \"/opt/comfy/ComfyUI/nodes.py\", line 1, in {}\n",
                self.class_type
            ),
        )
    }
    fn image(&self, name: &str) -> Result<Image, Failure> {
        match self.inputs.get(name) {
            Some(SimValue::Image(i)) => Ok(i.clone()),
            _ => Err(self.wrong_type(name, "shape")),
        }
    }
    fn mask(&self, name: &str) -> Result<Mask, Failure> {
        match self.inputs.get(name) {
            Some(SimValue::Mask(m)) => Ok(m.clone()),
            _ => Err(self.wrong_type(name, "shape")),
        }
    }
    fn latent(&self, name: &str) -> Result<Latent, Failure> {
        match self.inputs.get(name) {
            Some(SimValue::Latent(l)) => Ok(l.clone()),
            _ => Err(self.wrong_type(name, "copy")),
        }
    }
    fn passthrough(&self, name: &str) -> SimValue {
        self.inputs
            .get(name)
            .cloned()
            .unwrap_or(SimValue::Json(Value::Null))
    }
}

/// Directories nodes read and write.
pub struct NodeDirs<'p> {
    /// Output directory.
    pub output: &'p Path,
    /// Input directory.
    pub input: &'p Path,
    /// Temp directory (`<temp-directory>/temp`).
    pub temp: &'p Path,
    /// Per-node simulated work time.
    pub node_delay: Duration,
    /// Whether samplers send binary previews.
    pub previews: bool,
    /// Whether samplers send `progress_text` frames (`--sim-progress-text`).
    pub progress_text: bool,
}

/// Runs one node.
pub async fn run(ctx: &mut NodeCtx<'_, '_>, dirs: &NodeDirs<'_>) -> Result<NodeOutput, NodeError> {
    let out = |values: Vec<SimValue>| Ok(NodeOutput { values, ui: None });
    match ctx.class_type {
        "TestSleep" => return test_sleep(ctx).await,
        "KSampler" => return ksampler(ctx, dirs).await,
        _ => {}
    }
    tokio::time::sleep(dirs.node_delay).await;
    match ctx.class_type {
        "EmptyImage" => {
            let color = color_from_int(ctx.int("color"));
            out(vec![SimValue::Image(Image {
                height: ctx.int("height").max(1) as u32,
                width: ctx.int("width").max(1) as u32,
                channels: 3,
                frames: vec![color; ctx.int("batch_size").max(1) as usize],
            })])
        }
        "SolidMask" => out(vec![SimValue::Mask(Mask {
            height: ctx.int("height").max(1) as u32,
            width: ctx.int("width").max(1) as u32,
            frames: vec![ctx.float("value") as f32],
        })]),
        "JoinImageWithAlpha" => {
            let image = ctx.image("image")?;
            let alpha = ctx.mask("alpha")?;
            let mut frames = Vec::with_capacity(image.frames.len());
            for (i, f) in image.frames.iter().enumerate() {
                let Some(a) = alpha.frames.get(i) else {
                    return Err(Failure::new(
                        "IndexError",
                        format!("index {i} is out of bounds for dimension 0 with size {}", alpha.frames.len()),
                        "  File \"/opt/comfy/ComfyUI/comfy_extras/nodes_compositing.py\", line 202, in execute\n    out_images.append(torch.cat((image[i][:,:,:3], alpha[i].unsqueeze(2)), dim=2))\n",
                    )
                    .into());
                };
                frames.push([f[0], f[1], f[2], 1.0 - a]);
            }
            out(vec![SimValue::Image(Image {
                channels: 4,
                frames,
                ..image
            })])
        }
        "ImageBatch" => {
            let a = ctx.image("image1")?;
            let b = ctx.image("image2")?;
            if a.channels != b.channels {
                return Err(Failure::new(
                    "RuntimeError",
                    format!(
                        "Sizes of tensors must match except in dimension 0. Expected size {} but got size {} for tensor number 1 in the list.",
                        a.channels, b.channels
                    ),
                    "  File \"/opt/comfy/ComfyUI/nodes.py\", line 1857, in batch\n    s = torch.cat((image1, image2), dim=0)\n        ^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^\n",
                )
                .into());
            }
            let mut frames = a.frames.clone();
            frames.extend(b.frames);
            out(vec![SimValue::Image(Image { frames, ..a })])
        }
        "CheckpointLoaderSimple" => {
            let name = ctx.string("ckpt_name");
            out(vec![
                SimValue::Model(name.clone()),
                SimValue::Clip(name.clone()),
                SimValue::Vae(name),
            ])
        }
        "VAELoader" => out(vec![SimValue::Vae(ctx.string("vae_name"))]),
        "LoraLoader" => out(vec![ctx.passthrough("model"), ctx.passthrough("clip")]),
        "CLIPTextEncode" => out(vec![SimValue::Conditioning(ctx.string("text"))]),
        "EmptyLatentImage" => out(vec![SimValue::Latent(Latent {
            height: (ctx.int("height") / 8).max(1) as u32,
            width: (ctx.int("width") / 8).max(1) as u32,
            batch: ctx.int("batch_size").max(1) as u32,
            tint: [0.0, 0.0, 0.0, 1.0],
        })]),
        "VAEDecode" => {
            let l = ctx.latent("samples")?;
            out(vec![SimValue::Image(Image {
                height: l.height * 8,
                width: l.width * 8,
                channels: 3,
                frames: vec![l.tint; l.batch as usize],
            })])
        }
        "LoadImage" => load_image(ctx, dirs),
        "SaveImage" => {
            let images = ctx.image("images")?;
            let prefix = ctx.string("filename_prefix");
            save_images(ctx, &images, &prefix, dirs.output, "output")
        }
        "PreviewImage" => {
            let images = ctx.image("images")?;
            let suffix: String = uuid::Uuid::new_v4().as_bytes()[..5]
                .iter()
                .map(|b| char::from(b"abcdefghijklmnopqrstupvxyz"[usize::from(*b) % 26]))
                .collect();
            save_images(
                ctx,
                &images,
                &format!("ComfyUI_temp_{suffix}"),
                dirs.temp,
                "temp",
            )
        }
        other => Err(Failure::new(
            "NotImplementedError",
            format!("the simulator has no behaviour for {other}"),
            "  File \"/opt/comfy/ComfyUI/nodes.py\", line 1, in execute\n",
        )
        .into()),
    }
}

async fn test_sleep(ctx: &mut NodeCtx<'_, '_>) -> Result<NodeOutput, NodeError> {
    let seconds = ctx.float("seconds").max(0.0);
    let sim = ctx.progress.sim();
    let start = Instant::now();
    loop {
        let elapsed = start.elapsed().as_secs_f64();
        if sim.is_interrupted() {
            return Err(NodeError::Interrupted);
        }
        ctx.progress
            .update(ctx.node_id, json!(elapsed.min(seconds)), json!(seconds));
        if elapsed >= seconds {
            break;
        }
        tokio::select! {
            _ = tokio::time::sleep(Duration::from_millis(10)) => {}
            _ = sim.interrupt_notify.notified() => {}
        }
    }
    Ok(NodeOutput {
        values: vec![ctx.passthrough("value")],
        ui: None,
    })
}

async fn ksampler(ctx: &mut NodeCtx<'_, '_>, dirs: &NodeDirs<'_>) -> Result<NodeOutput, NodeError> {
    let mut latent = ctx.latent("latent_image")?;
    let steps = ctx.int("steps").max(1);
    let seed = ctx.json("seed").as_u64().unwrap_or(0);
    let sim = ctx.progress.sim();
    for step in 1..=steps {
        if sim.is_interrupted() {
            return Err(NodeError::Interrupted);
        }
        tokio::select! {
            _ = tokio::time::sleep(dirs.node_delay) => {}
            _ = sim.interrupt_notify.notified() => return Err(NodeError::Interrupted),
        }
        ctx.progress.update(ctx.node_id, json!(step), json!(steps));
        if dirs.progress_text {
            sim.hub.send_progress_text(
                &format!("step {step}/{steps}"),
                ctx.node_id,
                ctx.progress.client(),
            );
        }
        if dirs.previews {
            let shade = (step * 255 / steps) as u8;
            let preview = png::solid(
                latent.width.max(1),
                latent.height.max(1),
                [shade, shade, shade, 255],
                3,
                &[],
            );
            let meta = json!({
                "node_id": ctx.node_id, "prompt_id": ctx.progress.prompt_id(), "display_node_id": ctx.node_id,
                "parent_node_id": null, "real_node_id": ctx.node_id, "image_type": "image/png",
            });
            sim.hub.send_preview(&preview, &meta, ctx.progress.client());
        }
    }
    let h = seed.wrapping_mul(0x9e37_79b9_7f4a_7c15);
    latent.tint = [
        ((h >> 16) & 0xff) as f32 / 255.0,
        ((h >> 8) & 0xff) as f32 / 255.0,
        (h & 0xff) as f32 / 255.0,
        1.0,
    ];
    Ok(NodeOutput {
        values: vec![SimValue::Latent(latent)],
        ui: None,
    })
}

fn load_image(ctx: &NodeCtx<'_, '_>, dirs: &NodeDirs<'_>) -> Result<NodeOutput, NodeError> {
    let raw = ctx.string("image");
    let (name, kind) = annotated_name(&raw);
    let root = match kind {
        Some("output") => dirs.output,
        Some("temp") => dirs.temp,
        _ => dirs.input,
    };
    let path = crate::paths::safe_join(root, name).unwrap_or_else(|| root.join("__invalid__"));
    let header = std::fs::read(&path).ok().and_then(|b| png::read_header(&b));
    let Some((width, height, channels)) = header else {
        return Err(Failure::new(
            "PIL.UnidentifiedImageError",
            format!("cannot identify image file '{}'", path.display()),
            "  File \"/opt/comfy/ComfyUI/nodes.py\", line 1687, in load_image\n    img = node_helpers.pillow(Image.open, image_path)\n          ^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^\n",
        )
        .into());
    };
    let image = Image {
        height,
        width,
        channels: 3,
        frames: vec![[0.5, 0.5, 0.5, 1.0]],
    };
    let mask = if channels == 4 {
        Mask {
            height,
            width,
            frames: vec![0.0],
        }
    } else {
        Mask {
            height: 64,
            width: 64,
            frames: vec![0.0],
        }
    };
    Ok(NodeOutput {
        values: vec![SimValue::Image(image), SimValue::Mask(mask)],
        ui: None,
    })
}

/// ComfyUI `folder_paths.get_save_image_path` + `SaveImage.save_images`.
fn save_images(
    ctx: &NodeCtx<'_, '_>,
    images: &Image,
    prefix: &str,
    root: &Path,
    kind: &str,
) -> Result<NodeOutput, NodeError> {
    let prefix = prefix
        .replace("%width%", &images.width.to_string())
        .replace("%height%", &images.height.to_string());
    let (subfolder, filename) = match prefix.rsplit_once('/') {
        Some((dir, file)) => (dir.to_string(), file.to_string()),
        None => (String::new(), prefix.clone()),
    };
    let Some(folder) = crate::paths::safe_join(root, &subfolder) else {
        let full = root.join(&subfolder);
        return Err(Failure::new(
            "Exception",
            format!(
                "**** ERROR: Saving image outside the output folder is not allowed.\n full_output_folder: {}\n         output_dir: {}",
                full.display(),
                root.display()
            ),
            "  File \"/opt/comfy/ComfyUI/folder_paths.py\", line 463, in get_save_image_path\n    raise Exception(err)\n",
        )
        .into());
    };
    let io_fail = |e: std::io::Error, path: &PathBuf| {
        Failure::new(
            "OSError",
            format!(
                "[Errno {}] {}: '{}'",
                e.raw_os_error().unwrap_or(5),
                e,
                path.display()
            ),
            "  File \"/opt/comfy/ComfyUI/nodes.py\", line 1618, in save_images\n    img.save(os.path.join(full_output_folder, file), pnginfo=metadata, compress_level=self.compress_level)\n",
        )
    };
    std::fs::create_dir_all(&folder).map_err(|e| io_fail(e, &folder))?;
    let mut counter = next_counter(&folder, &filename);
    let prompt_text = crate::pyjson::to_string(ctx.prompt);
    let mut text: Vec<(String, String)> = vec![("prompt".into(), prompt_text)];
    if let Some(Value::Object(extra)) = ctx.extra_pnginfo {
        for (k, v) in extra {
            text.push((k.clone(), crate::pyjson::to_string(v)));
        }
    }
    let text_refs: Vec<(&str, &str)> = text.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    let mut results = Vec::new();
    for (batch_number, frame) in images.frames.iter().enumerate() {
        let name = filename.replace("%batch_num%", &batch_number.to_string());
        let file = format!("{name}_{counter:05}_.png");
        let rgba = frame.map(|c| (c.clamp(0.0, 1.0) * 255.0) as u8);
        let bytes = png::solid(
            images.width,
            images.height,
            rgba,
            images.channels.clamp(3, 4) as u8,
            &text_refs,
        );
        let path = folder.join(&file);
        std::fs::write(&path, bytes).map_err(|e| io_fail(e, &path))?;
        results.push(json!({"filename": file, "subfolder": subfolder, "type": kind}));
        counter += 1;
    }
    Ok(NodeOutput {
        values: Vec::new(),
        ui: Some(json!({"images": results})),
    })
}

/// `max(counter of files named "<filename>_<digits>_...") + 1`, or 1.
fn next_counter(folder: &Path, filename: &str) -> u64 {
    let prefix_len = filename.len();
    crate::paths::list_files(folder)
        .iter()
        .filter_map(|f| {
            let head = f.get(..prefix_len + 1)?;
            if !head.ends_with('_') || !head[..prefix_len].eq_ignore_ascii_case(filename) {
                return None;
            }
            f.get(prefix_len + 1..)?
                .split('_')
                .next()?
                .parse::<u64>()
                .ok()
        })
        .max()
        .map_or(1, |m| m + 1)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn counter_follows_comfyui_naming() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(next_counter(dir.path(), "probe"), 1);
        std::fs::write(dir.path().join("probe_00001_.png"), b"x").unwrap();
        std::fs::write(dir.path().join("probe_00007_.png"), b"x").unwrap();
        std::fs::write(dir.path().join("probe_custom_00009_.png"), b"x").unwrap();
        assert_eq!(next_counter(dir.path(), "probe"), 8);
        assert_eq!(next_counter(dir.path(), "probe_custom"), 10);
    }
}

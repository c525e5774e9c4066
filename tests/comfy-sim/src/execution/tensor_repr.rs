//! `str(torch.Tensor)` look-alike (default print options: threshold 1000, edgeitems 3,
//! linewidth 80), used for `current_inputs` of `execution_error`.

use crate::execution::values::{Image, Latent, Mask};

const EDGE: usize = 3;
const THRESHOLD: usize = 1000;
const LINEWIDTH: usize = 80;

/// Repr of an image tensor `[B, H, W, C]`.
pub fn image(img: &Image) -> String {
    let shape = [
        img.frames.len(),
        img.height as usize,
        img.width as usize,
        img.channels as usize,
    ];
    render(&shape, &|idx: &[usize]| {
        img.frames.get(idx[0]).map_or(0.0, |f| f[idx[3].min(3)])
    })
}

/// Repr of a mask tensor `[B, H, W]`.
pub fn mask(m: &Mask) -> String {
    let shape = [m.frames.len(), m.height as usize, m.width as usize];
    render(&shape, &|idx: &[usize]| {
        m.frames.get(idx[0]).copied().unwrap_or(0.0)
    })
}

/// Repr of a latent's samples `[B, 4, H, W]` (zeros, like an empty latent).
pub fn latent(l: &Latent) -> String {
    let shape = [l.batch as usize, 4, l.height as usize, l.width as usize];
    render(&shape, &|_: &[usize]| 0.0)
}

fn render(shape: &[usize], value: &dyn Fn(&[usize]) -> f32) -> String {
    let numel: usize = shape.iter().product();
    if numel == 0 {
        return format!(
            "tensor([], size=({}))",
            shape
                .iter()
                .map(usize::to_string)
                .collect::<Vec<_>>()
                .join(", ")
        );
    }
    let summarize = numel > THRESHOLD;
    // The formatter looks at the values that will be printed; our tensors have few distinct values.
    let mut values = Vec::new();
    collect(shape, &mut Vec::new(), summarize, value, &mut values);
    let integral = values.iter().all(|v| v.fract() == 0.0);
    let fmt = |v: f32| {
        if integral {
            format!("{v:.0}.")
        } else {
            format!("{v:.4}")
        }
    };
    let width = values.iter().map(|v| fmt(*v).len()).max().unwrap_or(1);
    let body = level(
        shape,
        &mut Vec::new(),
        7,
        summarize,
        value,
        &|v| format!("{:>width$}", fmt(v)),
        width,
    );
    format!("tensor({body})")
}

fn indices(n: usize, summarize: bool) -> Vec<Option<usize>> {
    if summarize && n > 2 * EDGE {
        (0..EDGE)
            .map(Some)
            .chain(std::iter::once(None))
            .chain((n - EDGE..n).map(Some))
            .collect()
    } else {
        (0..n).map(Some).collect()
    }
}

fn collect(
    shape: &[usize],
    prefix: &mut Vec<usize>,
    summarize: bool,
    value: &dyn Fn(&[usize]) -> f32,
    out: &mut Vec<f32>,
) {
    let dim = prefix.len();
    if dim == shape.len() {
        out.push(value(prefix));
        return;
    }
    for i in indices(shape[dim], summarize).into_iter().flatten() {
        prefix.push(i);
        collect(shape, prefix, summarize, value, out);
        prefix.pop();
    }
}

fn level(
    shape: &[usize],
    prefix: &mut Vec<usize>,
    indent: usize,
    summarize: bool,
    value: &dyn Fn(&[usize]) -> f32,
    fmt: &dyn Fn(f32) -> String,
    width: usize,
) -> String {
    let dim = prefix.len();
    let remaining = shape.len() - dim;
    if remaining == 1 {
        let items: Vec<String> = indices(shape[dim], summarize)
            .into_iter()
            .map(|i| match i {
                Some(i) => {
                    prefix.push(i);
                    let s = fmt(value(prefix));
                    prefix.pop();
                    s
                }
                None => " ...".to_string(),
            })
            .collect();
        let per_line = ((LINEWIDTH.saturating_sub(indent)) / (width + 2)).max(1);
        let lines: Vec<String> = items.chunks(per_line).map(|c| c.join(", ")).collect();
        return format!(
            "[{}]",
            lines.join(&format!(",\n{}", " ".repeat(indent + 1)))
        );
    }
    let slices: Vec<String> = indices(shape[dim], summarize)
        .into_iter()
        .map(|i| match i {
            Some(i) => {
                prefix.push(i);
                let s = level(shape, prefix, indent + 1, summarize, value, fmt, width);
                prefix.pop();
                s
            }
            None => "...".to_string(),
        })
        .collect();
    let sep = format!(",{}{}", "\n".repeat(remaining - 1), " ".repeat(indent + 1));
    format!("[{}]", slices.join(&sep))
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn matches_recorded_torch_repr_of_a_black_64px_image() {
        let recorded: serde_json::Value = serde_json::from_str(include_str!(
            "../../../fixtures/comfyui-transcripts/get_history_runtime_error.json"
        ))
        .unwrap();
        let entry = recorded["body"]
            .as_object()
            .unwrap()
            .values()
            .next()
            .unwrap();
        let err = &entry["status"]["messages"][2][1];
        let img = Image {
            height: 64,
            width: 64,
            channels: 3,
            frames: vec![[0.0, 0.0, 0.0, 1.0]],
        };
        assert_eq!(
            image(&img),
            err["current_inputs"]["image1"][0].as_str().unwrap()
        );
        let rgba = Image {
            channels: 4,
            frames: vec![[0.0; 4]],
            ..img
        };
        assert_eq!(
            image(&rgba),
            err["current_inputs"]["image2"][0].as_str().unwrap()
        );
    }

    #[test]
    fn small_tensors_are_not_summarised() {
        let m = Mask {
            height: 2,
            width: 2,
            frames: vec![0.5],
        };
        assert_eq!(
            mask(&m),
            "tensor([[[0.5000, 0.5000],\n         [0.5000, 0.5000]]])"
        );
    }
}

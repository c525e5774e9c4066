//! Minimal PNG encoder (stored deflate blocks, no compression dependency) and IHDR reader.

/// An 8-bit RGB or RGBA image to encode.
pub struct RawImage<'a> {
    /// Width in pixels.
    pub width: u32,
    /// Height in pixels.
    pub height: u32,
    /// 3 (RGB) or 4 (RGBA).
    pub channels: u8,
    /// Row-major pixel bytes, `width * height * channels` long.
    pub pixels: &'a [u8],
}

/// Encodes `img` as PNG with `tEXt` chunks (ComfyUI stores `prompt` and `workflow` there).
pub fn encode(img: &RawImage<'_>, text: &[(&str, &str)]) -> Vec<u8> {
    let mut out = Vec::with_capacity(img.pixels.len() + 1024);
    out.extend_from_slice(b"\x89PNG\r\n\x1a\n");
    let mut ihdr = Vec::with_capacity(13);
    ihdr.extend_from_slice(&img.width.to_be_bytes());
    ihdr.extend_from_slice(&img.height.to_be_bytes());
    let color_type = if img.channels == 4 { 6 } else { 2 };
    ihdr.extend_from_slice(&[8, color_type, 0, 0, 0]);
    chunk(&mut out, b"IHDR", &ihdr);
    for (k, v) in text {
        let mut t = Vec::with_capacity(k.len() + v.len() + 1);
        t.extend_from_slice(k.as_bytes());
        t.push(0);
        t.extend_from_slice(v.as_bytes());
        chunk(&mut out, b"tEXt", &t);
    }
    let stride = img.width as usize * img.channels as usize;
    let mut raw = Vec::with_capacity((stride + 1) * img.height as usize);
    for row in 0..img.height as usize {
        raw.push(0); // filter: none
        let start = row * stride;
        raw.extend_from_slice(img.pixels.get(start..start + stride).unwrap_or(&[]));
    }
    chunk(&mut out, b"IDAT", &zlib_stored(&raw));
    chunk(&mut out, b"IEND", &[]);
    out
}

/// A solid-colour image encoded as PNG.
pub fn solid(
    width: u32,
    height: u32,
    rgba: [u8; 4],
    channels: u8,
    text: &[(&str, &str)],
) -> Vec<u8> {
    let px = &rgba[..channels as usize];
    let pixels: Vec<u8> = std::iter::repeat_n(px, width as usize * height as usize)
        .flatten()
        .copied()
        .collect();
    encode(
        &RawImage {
            width,
            height,
            channels,
            pixels: &pixels,
        },
        text,
    )
}

/// Reads `(width, height, channels)` from a PNG header; `None` if it is not a PNG.
pub fn read_header(bytes: &[u8]) -> Option<(u32, u32, u8)> {
    if bytes.len() < 26 || &bytes[..8] != b"\x89PNG\r\n\x1a\n" || &bytes[12..16] != b"IHDR" {
        return None;
    }
    let w = u32::from_be_bytes(bytes[16..20].try_into().ok()?);
    let h = u32::from_be_bytes(bytes[20..24].try_into().ok()?);
    let channels = match bytes[25] {
        4 | 6 => 4,
        _ => 3,
    };
    Some((w, h, channels))
}

fn chunk(out: &mut Vec<u8>, kind: &[u8; 4], data: &[u8]) {
    out.extend_from_slice(&(data.len() as u32).to_be_bytes());
    out.extend_from_slice(kind);
    out.extend_from_slice(data);
    let mut crc = Crc32::new();
    crc.update(kind);
    crc.update(data);
    out.extend_from_slice(&crc.finish().to_be_bytes());
}

fn zlib_stored(data: &[u8]) -> Vec<u8> {
    let mut out = vec![0x78, 0x01];
    let mut blocks = data.chunks(65_535).peekable();
    if blocks.peek().is_none() {
        out.extend_from_slice(&[1, 0, 0, 0xff, 0xff]);
    }
    while let Some(block) = blocks.next() {
        out.push(u8::from(blocks.peek().is_none()));
        let len = block.len() as u16;
        out.extend_from_slice(&len.to_le_bytes());
        out.extend_from_slice(&(!len).to_le_bytes());
        out.extend_from_slice(block);
    }
    let (mut a, mut b) = (1u32, 0u32);
    for &byte in data {
        a = (a + u32::from(byte)) % 65_521;
        b = (b + a) % 65_521;
    }
    out.extend_from_slice(&((b << 16) | a).to_be_bytes());
    out
}

struct Crc32(u32);

impl Crc32 {
    fn new() -> Self {
        Self(0xffff_ffff)
    }
    fn update(&mut self, data: &[u8]) {
        for &byte in data {
            let mut c = (self.0 ^ u32::from(byte)) & 0xff;
            for _ in 0..8 {
                c = if c & 1 != 0 {
                    0xedb8_8320 ^ (c >> 1)
                } else {
                    c >> 1
                };
            }
            self.0 = (self.0 >> 8) ^ c;
        }
    }
    fn finish(&self) -> u32 {
        self.0 ^ 0xffff_ffff
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn crc_matches_reference_value() {
        let mut c = Crc32::new();
        c.update(b"IEND");
        assert_eq!(c.finish(), 0xae42_6082);
    }

    #[test]
    fn solid_png_has_signature_and_header_round_trips() {
        let png = solid(64, 32, [255, 0, 0, 255], 3, &[("prompt", "{}")]);
        assert_eq!(&png[..8], b"\x89PNG\r\n\x1a\n");
        assert_eq!(read_header(&png), Some((64, 32, 3)));
        assert!(png.ends_with(&[0xae, 0x42, 0x60, 0x82]));
        assert_eq!(read_header(b"not a png at all, really not"), None);
    }

    #[test]
    fn large_images_span_several_stored_blocks() {
        let png = solid(300, 300, [1, 2, 3, 4], 4, &[]);
        assert_eq!(read_header(&png), Some((300, 300, 4)));
        assert!(png.len() > 300 * 300 * 4);
    }
}

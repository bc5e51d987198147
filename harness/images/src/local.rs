//! `path:VMLINUZ[,headers=DIR][,modules=DIR]`: a kernel image the user built, and the
//! vmlinux inside a bzImage, which QEMU boots through its PVH entry seconds faster under TCG.

use std::fs;
use std::io::Read;
use std::path::{Path, PathBuf};

use crate::kernel::Kernel;
use crate::{cache, Error, Result};

/// Decompress the vmlinux inside a bzImage (zstd or xz payload), or `None` when the payload is
/// in a format not handled here. The result is an ELF whose PVH note QEMU can boot directly.
pub fn extract_vmlinux(bzimage: &Path) -> Result<Option<Vec<u8>>> {
    let data = fs::read(bzimage).map_err(Error::io(bzimage))?;
    let is_elf = |v: &[u8]| v.starts_with(b"\x7fELF");
    if let Some(at) = find(&data, b"\x28\xb5\x2f\xfd") {
        let mut out = Vec::new();
        let mut decoder = ruzstd::decoding::StreamingDecoder::new(&data[at..])
            .map_err(|e| Error::Other(format!("{}: zstd: {e}", bzimage.display())))?;
        if decoder.read_to_end(&mut out).is_ok() && is_elf(&out) {
            return Ok(Some(out));
        }
    }
    if let Some(at) = find(&data, b"\xfd7zXZ\x00") {
        let mut out = Vec::new();
        let mut input = &data[at..];
        // The payload is followed by other bytes; the decoder stops at the stream's end.
        let _ = lzma_rs::xz_decompress(&mut input, &mut out);
        if is_elf(&out) {
            return Ok(Some(out));
        }
    }
    Ok(None)
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

/// The release string a bzImage carries in its setup header (`uname -r`).
pub fn bzimage_release(data: &[u8]) -> Option<String> {
    if data.get(0x202..0x206)? != b"HdrS" {
        return None;
    }
    let offset = u16::from_le_bytes([*data.get(0x20e)?, *data.get(0x20f)?]) as usize + 0x200;
    let text = data.get(offset..)?;
    let end = text.iter().position(|&b| b == 0 || b == b' ')?;
    std::str::from_utf8(&text[..end]).ok().map(str::to_string)
}

/// A kernel image the user built (`path:`), its vmlinux extracted once into the cache.
pub(crate) fn kernel(
    spec: &str,
    image: &Path,
    headers: Option<PathBuf>,
    modules: Option<PathBuf>,
    cache_root: &Path,
) -> Result<Kernel> {
    let data = fs::read(image).map_err(Error::io(image))?;
    let release = bzimage_release(&data).unwrap_or_else(|| "unknown".into());
    if let Some(dir) = headers.iter().chain(&modules).find(|d| !d.is_dir()) {
        return Err(Error::BadSpec {
            spec: spec.into(),
            why: format!("{} is not a directory", dir.display()),
        });
    }
    // Extracting the vmlinux takes seconds; keep it, keyed by the image's content.
    let digest = crate::modbuild::hex_digest(&[&data]);
    let entry = cache_root
        .join("kernels")
        .join(format!("local-{}", &digest[..16]));
    let dir = cache::get_or_make(&entry, |tmp| {
        if let Some(vmlinux) = extract_vmlinux(image)? {
            fs::write(tmp.join("vmlinux"), vmlinux).map_err(Error::io(tmp))?;
        }
        Ok(())
    })?;
    let vmlinux = dir.join("vmlinux");
    Ok(Kernel {
        spec: spec.to_string(),
        boot_image: if vmlinux.is_file() {
            vmlinux
        } else {
            image.to_path_buf()
        },
        modules_dir: modules.map(|m| m.join("lib/modules").join(&release)),
        config: headers
            .as_ref()
            .map(|h| h.join(".config"))
            .filter(|c| c.is_file()),
        release,
        headers,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bzimage_release_reads_the_setup_header() {
        let mut image = vec![0u8; 0x400];
        image[0x202..0x206].copy_from_slice(b"HdrS");
        image[0x20e..0x210].copy_from_slice(&0x100u16.to_le_bytes());
        image[0x300..0x312].copy_from_slice(b"6.1.0-54-amd64 (x)");
        assert_eq!(bzimage_release(&image).as_deref(), Some("6.1.0-54-amd64"));
        assert_eq!(bzimage_release(&[0u8; 16]), None);
    }
}

//! A reader of newc cpio archives for tests: checks the format as it goes, and reads
//! concatenated archives the way the kernel unpacks an initramfs.

/// One archive entry: name, mode and data.
pub(crate) type Entry = (String, u32, Vec<u8>);

/// Every entry of one or more concatenated archives, without their trailers. Panics on anything
/// the kernel would not unpack.
pub(crate) fn entries(bytes: &[u8]) -> Vec<Entry> {
    let mut out = Vec::new();
    let mut at = 0;
    let mut closed = false;
    while at < bytes.len() {
        assert_eq!(&bytes[at..at + 6], b"070701", "magic at {at}");
        let field = |i: usize| {
            let s = std::str::from_utf8(&bytes[at + 6 + i * 8..at + 14 + i * 8]).unwrap();
            u32::from_str_radix(s, 16).unwrap() as usize
        };
        let (mode, size, name_len) = (field(1), field(6), field(11));
        let name_at = at + 110;
        let name = std::str::from_utf8(&bytes[name_at..name_at + name_len - 1]).unwrap();
        let data_at = (name_at + name_len).next_multiple_of(4);
        let data = bytes[data_at..data_at + size].to_vec();
        at = (data_at + size).next_multiple_of(4);
        closed = name == "TRAILER!!!";
        if closed {
            // The kernel skips zeros between archives.
            while bytes.get(at) == Some(&0) {
                at += 1;
            }
            assert!(at.is_multiple_of(4), "next archive at {at} is not aligned");
        } else {
            out.push((name.to_string(), mode as u32, data));
        }
    }
    assert!(closed, "the last archive has no trailer");
    out
}

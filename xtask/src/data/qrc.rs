//! Files compiled into a program as Qt resources (`rcc`), read out of the
//! executable: how Debian's `rosegarden` ships its example songs. An rcc
//! blob is three tables: the tree (22-byte entries of format 2 and later:
//! name offset, flags, then a directory's child count and first child or a
//! file's locale and data offset, then a modification time), the names
//! (length, Qt's hash of the name, the name in UTF-16BE) and the payload
//! (a 4-byte length before each file). The tables are found by their
//! content: a name entry is recognised by its hash, the tree by resolving
//! every name it points at, the payload by gzip files lying where it says.

use std::collections::BTreeMap;

use anyhow::{bail, Context, Result};

const TREE_ENTRY_BYTES: usize = 22;
const FLAG_COMPRESSED: u16 = 0x01;
const FLAG_DIRECTORY: u16 = 0x02;
/// zstd-compressed files (Qt 6); this reader does not expand them.
const FLAG_COMPRESSED_ZSTD: u16 = 0x04;

/// One file of the resource tree.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Resource {
    /// `/examples/perfect-moment.rg`.
    pub path: String,
    /// As stored: zlib-compressed files (flag 1) are left so and flagged.
    pub data: Vec<u8>,
    pub zlib: bool,
}

/// Qt's `qt_hash` of a resource name.
pub fn qt_hash(name: &str) -> u32 {
    let mut h: u32 = 0;
    for c in name.encode_utf16() {
        h = (h << 4).wrapping_add(u32::from(c));
        h ^= (h & 0xf000_0000) >> 23;
        h &= 0x0fff_ffff;
    }
    h
}

fn be16(b: &[u8], at: usize) -> Option<u16> {
    Some(u16::from_be_bytes(b.get(at..at + 2)?.try_into().ok()?))
}

fn be32(b: &[u8], at: usize) -> Option<u32> {
    Some(u32::from_be_bytes(b.get(at..at + 4)?.try_into().ok()?))
}

/// The name entry at `at` and where the next begins, when its hash matches.
fn name_entry(b: &[u8], at: usize) -> Option<(String, usize)> {
    let len = usize::from(be16(b, at)?);
    let hash = be32(b, at + 2)?;
    if len == 0 {
        return None;
    }
    let units: Vec<u16> =
        b.get(at + 6..at + 6 + 2 * len)?.chunks_exact(2).map(|c| u16::from_be_bytes([c[0], c[1]])).collect();
    let name = String::from_utf16(&units).ok()?;
    (qt_hash(&name) == hash).then_some((name, at + 6 + 2 * len))
}

/// The names table holding the entry at `known`: walked back to its first
/// entry, then read forward. Offsets are from the table's start.
fn names_table(b: &[u8], known: usize) -> (usize, BTreeMap<u32, String>) {
    let mut start = known;
    'back: loop {
        for units in 1..=255usize {
            let Some(prev) = start.checked_sub(6 + 2 * units) else { break 'back };
            if name_entry(b, prev).is_some_and(|(_, next)| next == start) {
                start = prev;
                continue 'back;
            }
        }
        break;
    }
    let mut names = BTreeMap::new();
    let mut at = start;
    while let Some((name, next)) = name_entry(b, at) {
        names.insert((at - start) as u32, name);
        at = next;
    }
    (start, names)
}

/// Files under the tree entry `index`: (path, flags, data offset).
fn walk(
    b: &[u8],
    tree: usize,
    names: &BTreeMap<u32, String>,
    index: usize,
    prefix: &str,
    out: &mut Vec<(String, u16, u32)>,
    depth: usize,
) -> Option<()> {
    let at = tree + TREE_ENTRY_BYTES * index;
    let name = if index == 0 { String::new() } else { names.get(&be32(b, at)?)?.clone() };
    let flags = be16(b, at + 4)?;
    let path = if index == 0 { String::new() } else { format!("{prefix}/{name}") };
    if flags & FLAG_DIRECTORY != 0 {
        let count = be32(b, at + 6)? as usize;
        let first = be32(b, at + 10)? as usize;
        if depth > 32 || count > 100_000 || first <= index {
            return None;
        }
        for child in first..first + count {
            walk(b, tree, names, child, &path, out, depth + 1)?;
        }
    } else {
        out.push((path, flags, be32(b, at + 10)?));
    }
    Some(())
}

/// Every resource of the rcc blob whose names include `anchor_dir` (a
/// top-level folder such as `examples`), read out of `binary`.
pub fn resources(binary: &[u8], anchor_dir: &str) -> Result<Vec<Resource>> {
    let needle: Vec<u8> = anchor_dir.encode_utf16().flat_map(u16::to_be_bytes).collect();
    let anchor = binary
        .windows(needle.len())
        .enumerate()
        .filter(|(_, w)| *w == needle.as_slice())
        .filter_map(|(i, _)| i.checked_sub(6))
        .find(|&i| name_entry(binary, i).is_some_and(|(n, _)| n == anchor_dir))
        .with_context(|| format!("no Qt resource name table names a folder {anchor_dir:?}"))?;
    let (_, names) = names_table(binary, anchor);
    let anchor_offset = names
        .iter()
        .find(|(_, n)| n.as_str() == anchor_dir)
        .map(|(o, _)| *o)
        .context("the resource name table lost its anchor")?;
    // The tree: a root directory entry (name 0, flags 2, first child 1)
    // whose walk resolves every name and reaches the anchor folder.
    let mut files = None;
    let root_prefix = [0u8, 0, 0, 0, 0, 2];
    for (at, _) in binary.windows(6).enumerate().filter(|(_, w)| *w == root_prefix) {
        if be32(binary, at + 10) != Some(1) {
            continue;
        }
        let mut out = Vec::new();
        if walk(binary, at, &names, 0, "", &mut out, 0).is_none() || out.is_empty() {
            continue;
        }
        let anchor_child = (1..=be32(binary, at + 6).unwrap_or(0) as usize)
            .any(|i| be32(binary, at + TREE_ENTRY_BYTES * i) == Some(anchor_offset));
        if anchor_child {
            files = Some(out);
            break;
        }
    }
    let files = files.with_context(|| format!("no Qt resource tree holds the folder {anchor_dir:?}"))?;
    // The payload: the base at which every uncompressed `.rg`-like gzip file
    // (stored as is) starts with the gzip magic after its length.
    let gz: Vec<&(String, u16, u32)> = files.iter().filter(|f| f.1 & FLAG_COMPRESSED == 0).collect();
    let probe = gz
        .iter()
        .find(|f| f.0.starts_with(&format!("/{anchor_dir}/")))
        .context("the anchor folder holds no uncompressed file")?;
    let fits = |base: usize| {
        gz.iter().filter(|f| f.0.starts_with(&format!("/{anchor_dir}/"))).all(|f| {
            let at = base + f.2 as usize;
            be32(binary, at).is_some_and(|len| at + 4 + len as usize <= binary.len())
        })
    };
    let base = binary
        .windows(3)
        .enumerate()
        .filter(|(_, w)| *w == [0x1f, 0x8b, 0x08])
        .filter_map(|(g, _)| g.checked_sub(4 + probe.2 as usize))
        .find(|&base| {
            binary.get(base + probe.2 as usize + 4..base + probe.2 as usize + 6) == Some(&[0x1f, 0x8b]) && fits(base)
        })
        .with_context(|| format!("cannot place the resource payload ({} is not where the tree says)", probe.0))?;
    let mut out = Vec::new();
    for (path, flags, offset) in files {
        if flags & FLAG_COMPRESSED_ZSTD != 0 {
            bail!("{path}: zstd-compressed Qt resource; this reader expands only zlib");
        }
        let at = base + offset as usize;
        let len = be32(binary, at).with_context(|| format!("{path}: payload offset past the end"))? as usize;
        let data = binary.get(at + 4..at + 4 + len).with_context(|| format!("{path}: payload runs past the end"))?;
        out.push(Resource { path, data: data.to_vec(), zlib: flags & FLAG_COMPRESSED != 0 });
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn name(n: &str) -> Vec<u8> {
        let units: Vec<u16> = n.encode_utf16().collect();
        let mut v = (units.len() as u16).to_be_bytes().to_vec();
        v.extend(qt_hash(n).to_be_bytes());
        v.extend(units.iter().flat_map(|u| u.to_be_bytes()));
        v
    }

    fn entry(name_off: u32, flags: u16, a: u32, b: u32) -> Vec<u8> {
        let mut v = name_off.to_be_bytes().to_vec();
        v.extend(flags.to_be_bytes());
        if flags & FLAG_DIRECTORY != 0 {
            v.extend(a.to_be_bytes());
            v.extend(b.to_be_bytes());
        } else {
            v.extend([0u8, 0, 0, 1]);
            v.extend(b.to_be_bytes());
        }
        v.extend([0u8; 8]);
        v
    }

    /// A blob as rcc lays it out: tree, names, payload, inside other bytes.
    fn blob() -> (Vec<u8>, Vec<u8>) {
        let song = [0x1f, 0x8b, 0x08, 0, 1, 2, 3].to_vec();
        let mut names = name("examples");
        let song_name = names.len() as u32;
        names.extend(name("song.rg"));
        let mut payload = (song.len() as u32).to_be_bytes().to_vec();
        payload.extend(&song);
        let mut b = b"\x7fELF junk".to_vec();
        b.extend(entry(0, FLAG_DIRECTORY, 1, 1));
        b.extend(entry(0, FLAG_DIRECTORY, 1, 2));
        b.extend(entry(song_name, 0, 0, 0));
        b.extend(names);
        b.extend([0u8, 0]);
        b.extend(payload);
        b.extend(b"more junk");
        (b, song)
    }

    #[test]
    fn files_are_found_by_their_names_and_tree() {
        assert_eq!(qt_hash("examples"), 0x0e84_7f43);
        let (b, song) = blob();
        let r = resources(&b, "examples").expect("reads");
        assert_eq!(r, vec![Resource { path: "/examples/song.rg".into(), data: song, zlib: false }]);
    }

    #[test]
    fn a_binary_without_the_folder_is_refused() {
        let (b, _) = blob();
        let e = resources(&b, "demos").expect_err("no such folder");
        assert!(e.to_string().contains("\"demos\""), "{e}");
        assert!(resources(b"plain bytes", "examples").is_err());
    }
}

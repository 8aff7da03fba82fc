//! Plugins built for the shared JavaScript engine: a component carrying its
//! script in a top-level custom section named [`SCRIPT_SECTION`].
//!
//! The host splits such a component into the engine (the component without
//! that section) and the script. The engine's bytes alone decide which
//! compiled code the plugin runs on, so every plugin built from one engine
//! file shares one compiled copy; the script reaches the guest through the
//! `cnode:plugin/script` import. See `plugins/js-engine/`.

use std::borrow::Cow;

/// The custom section holding a plugin's script.
pub const SCRIPT_SECTION: &str = "cnode:script";

/// The largest script accepted, bytes.
pub const MAX_SCRIPT_BYTES: usize = 1 << 20;

/// A component split into the code to compile and the script, if any.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct Split<'a> {
    /// The component without its `cnode:script` section.
    pub(crate) code: Cow<'a, [u8]>,
    /// The script, when the component has one.
    pub(crate) script: Option<String>,
}

/// A `cnode:script` section the host refuses.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub(crate) enum ScriptError {
    #[error("the component has more than one `{SCRIPT_SECTION}` section")]
    Duplicate,
    #[error("the `{SCRIPT_SECTION}` section is {0} bytes, the limit is {MAX_SCRIPT_BYTES}")]
    TooLarge(usize),
    #[error("the `{SCRIPT_SECTION}` section is not UTF-8 text")]
    NotUtf8,
}

/// Splits off the `cnode:script` section. Bytes that do not parse as a
/// sequence of top-level sections are returned whole, without a script:
/// compiling them reports what is wrong.
pub(crate) fn split(bytes: &[u8]) -> Result<Split<'_>, ScriptError> {
    let whole = || Split {
        code: Cow::Borrowed(bytes),
        script: None,
    };
    // `\0asm`, then a version and layer (4 bytes); a component's layer is 1,
    // but any layout of sections is handled the same way.
    if bytes.len() < 8 || &bytes[..4] != b"\0asm" {
        return Ok(whole());
    }
    let mut found: Option<(usize, usize, &[u8])> = None;
    let mut at = 8;
    while at < bytes.len() {
        let start = at;
        let id = bytes[at];
        at += 1;
        let Some((size, n)) = leb_u32(&bytes[at..]) else {
            return Ok(whole());
        };
        at += n;
        let Some(end) = at.checked_add(size as usize).filter(|&e| e <= bytes.len()) else {
            return Ok(whole());
        };
        if id == 0 {
            let body = &bytes[at..end];
            if let Some((name_len, n)) = leb_u32(body)
                && let Some(name) = body.get(n..n + name_len as usize)
                && name == SCRIPT_SECTION.as_bytes()
            {
                if found.is_some() {
                    return Err(ScriptError::Duplicate);
                }
                found = Some((start, end, &body[n + name_len as usize..]));
            }
        }
        at = end;
    }
    let Some((start, end, payload)) = found else {
        return Ok(whole());
    };
    if payload.len() > MAX_SCRIPT_BYTES {
        return Err(ScriptError::TooLarge(payload.len()));
    }
    let script = std::str::from_utf8(payload).map_err(|_| ScriptError::NotUtf8)?;
    let code = if end == bytes.len() {
        Cow::Borrowed(&bytes[..start])
    } else {
        Cow::Owned([&bytes[..start], &bytes[end..]].concat())
    };
    Ok(Split {
        code,
        script: Some(script.to_owned()),
    })
}

/// `engine` (a component) with `script` appended as its `cnode:script`
/// section: what `plugins/js-engine/jsplugin.mjs` builds.
pub fn attach(engine: &[u8], script: &str) -> Vec<u8> {
    let name = SCRIPT_SECTION.as_bytes();
    let mut body = leb(name.len());
    body.extend_from_slice(name);
    body.extend_from_slice(script.as_bytes());
    let mut out = Vec::with_capacity(engine.len() + body.len() + 6);
    out.extend_from_slice(engine);
    out.push(0);
    out.extend(leb(body.len()));
    out.extend(body);
    out
}

fn leb(mut n: usize) -> Vec<u8> {
    let mut out = Vec::new();
    loop {
        let byte = (n & 0x7f) as u8;
        n >>= 7;
        if n == 0 {
            out.push(byte);
            return out;
        }
        out.push(byte | 0x80);
    }
}

/// An unsigned LEB128 of at most 5 bytes: the value and its length.
fn leb_u32(bytes: &[u8]) -> Option<(u32, usize)> {
    let mut value: u64 = 0;
    for (i, &b) in bytes.iter().take(5).enumerate() {
        value |= u64::from(b & 0x7f) << (7 * i);
        if b & 0x80 == 0 {
            return u32::try_from(value).ok().map(|v| (v, i + 1));
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    const HEADER: &[u8] = b"\0asm\x0d\x00\x01\x00";

    fn section(id: u8, body: &[u8]) -> Vec<u8> {
        [&[id][..], &leb(body.len()), body].concat()
    }

    fn custom(name: &str, payload: &[u8]) -> Vec<u8> {
        section(
            0,
            &[&leb(name.len())[..], name.as_bytes(), payload].concat(),
        )
    }

    #[test]
    fn a_trailing_script_section_is_split_off_without_copying() {
        let code = [HEADER, &section(1, b"core module")].concat();
        let bytes = attach(&code, "exports.handle = 1;");
        assert_eq!(
            bytes,
            [code.clone(), custom(SCRIPT_SECTION, b"exports.handle = 1;")].concat()
        );
        let split = split(&bytes).unwrap();
        assert!(matches!(split.code, Cow::Borrowed(_)));
        assert_eq!(&*split.code, &code[..]);
        assert_eq!(split.script.as_deref(), Some("exports.handle = 1;"));
    }

    #[test]
    fn a_script_section_in_the_middle_is_cut_out_and_other_custom_sections_stay() {
        let before = [HEADER, &section(1, b"a")].concat();
        let after = [custom("other", b"kept"), section(2, &[7u8; 300])].concat();
        let bytes = [
            before.clone(),
            custom(SCRIPT_SECTION, "ś".as_bytes()),
            after.clone(),
        ]
        .concat();
        let split = split(&bytes).unwrap();
        assert_eq!(&*split.code, &[before, after].concat()[..]);
        assert_eq!(split.script.as_deref(), Some("ś"));
    }

    #[test]
    fn without_a_script_section_the_bytes_come_back_whole() {
        for bytes in [
            [HEADER, &custom("cnode:scripts", b"x")].concat(),
            b"not wasm at all".to_vec(),
            // A section claiming more bytes than there are.
            [HEADER, &[1u8, 0x7f][..]].concat(),
            // An unterminated size.
            [HEADER, &[1u8, 0xff, 0xff, 0xff, 0xff, 0xff][..]].concat(),
        ] {
            let split = split(&bytes).unwrap();
            assert_eq!(&*split.code, &bytes[..]);
            assert_eq!(split.script, None);
        }
    }

    #[test]
    fn refused_scripts() {
        let two = [
            HEADER,
            &custom(SCRIPT_SECTION, b"a"),
            &custom(SCRIPT_SECTION, b"b"),
        ]
        .concat();
        assert_eq!(split(&two), Err(ScriptError::Duplicate));
        let bad = [HEADER, &custom(SCRIPT_SECTION, &[0xff, 0xfe])].concat();
        assert_eq!(split(&bad), Err(ScriptError::NotUtf8));
        let big = [
            HEADER,
            &custom(SCRIPT_SECTION, &vec![b' '; MAX_SCRIPT_BYTES + 1]),
        ]
        .concat();
        assert_eq!(
            split(&big),
            Err(ScriptError::TooLarge(MAX_SCRIPT_BYTES + 1))
        );
    }
}

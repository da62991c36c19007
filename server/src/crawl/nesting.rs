//! A page's elements nested deeper than [`MAX_DEPTH`] are flattened before
//! it is parsed: their tags dropped, their text kept.
//!
//! A hostile or broken page of a few kilobytes (`<div>` seven hundred times)
//! overflowed the stack of the Markdown converter, which walks the tree
//! recursively, and aborted the whole server; one of 100,000 nested `<div>`
//! (1.1 MB, under the page limit) kept the HTML parser busy for minutes,
//! since each start tag walks the stack of open elements. Browsers bound the
//! tree the same way (Blink adds elements past depth 512 as siblings).
//! Real pages nest a few dozen elements deep.
//!
//! This is a scan of the tags, not a parse: it counts the elements a
//! parser keeps open, leaving out those whose end tag HTML lets a page omit
//! (`p`, `li`, `td`…: a thousand unclosed `<p>` are a thousand siblings),
//! void elements and self-closing tags, and skips comments and the text of
//! `script`, `style` and the like. Where it differs from a parser on a
//! broken page, the cost is tags dropped past the depth, never text.

use std::borrow::Cow;

/// The deepest element kept. The converter's recursion takes about 3 KB of
/// stack a level, which a 2 MiB thread holds for about 600 levels.
pub const MAX_DEPTH: usize = 256;

/// How many open elements an end tag is matched against, from the
/// innermost: a page of unmatched end tags under a deep stack must not make
/// the scan quadratic. A parser would close those between; here an end tag
/// that matches none of them is left as it is.
const MATCHED_WITHIN: usize = 64;

/// No end tag.
const VOID: &[&str] = &[
    "area", "base", "basefont", "bgsound", "br", "col", "embed", "frame", "hr", "image", "img",
    "input", "keygen", "link", "meta", "param", "source", "track", "wbr",
];

/// Their end tag may be omitted: not counted.
const OPTIONAL_END: &[&str] = &[
    "body", "caption", "colgroup", "dd", "dt", "head", "html", "li", "optgroup", "option", "p",
    "rb", "rp", "rt", "rtc", "tbody", "td", "tfoot", "th", "thead", "tr",
];

/// Their content is text up to their end tag.
const RAW_TEXT: &[&str] = &[
    "iframe", "noembed", "noframes", "noscript", "script", "style", "textarea", "title", "xmp",
];

/// An open element: where its name is in the page, and whether its tags
/// are dropped.
struct Open {
    at: u32,
    len: u16,
    dropped: bool,
}

/// `html` with the tags of elements past [`MAX_DEPTH`] dropped; as it is
/// (no copy) when none is.
pub fn flatten(html: &str) -> Cow<'_, str> {
    flatten_past(html, MAX_DEPTH)
}

fn flatten_past(html: &str, max: usize) -> Cow<'_, str> {
    let bytes = html.as_bytes();
    let mut open: Vec<Open> = Vec::new();
    let mut out: Option<String> = None;
    let mut copied = 0;
    let mut drop = |from: usize, to: usize, copied: &mut usize| {
        let out = out.get_or_insert_with(|| String::with_capacity(html.len()));
        out.push_str(&html[*copied..from]);
        *copied = to;
    };
    let mut i = 0;
    while let Some(found) = html[i..].find('<') {
        let lt = i + found;
        let rest = &bytes[lt + 1..];
        i = lt + 1;
        match rest.first() {
            Some(b'!') if rest.starts_with(b"!--") => {
                i = find(bytes, lt + 4, b"-->").map_or(bytes.len(), |at| at + 3);
            }
            Some(b'!' | b'?') => {
                i = find(bytes, lt + 1, b">").map_or(bytes.len(), |at| at + 1);
            }
            Some(b'/') if rest.get(1).is_some_and(u8::is_ascii_alphabetic) => {
                let name = lt + 2;
                let name_end = name_end(bytes, name);
                let end = find(bytes, name_end, b">").map_or(bytes.len(), |at| at + 1);
                i = end;
                let name = &bytes[name..name_end];
                if !counted(name) {
                    continue;
                }
                let from = open.len().saturating_sub(MATCHED_WITHIN);
                let matched = open[from..].iter().rposition(|o| {
                    bytes[o.at as usize..o.at as usize + o.len as usize].eq_ignore_ascii_case(name)
                });
                if let Some(k) = matched {
                    let dropped = open[from + k].dropped;
                    open.truncate(from + k);
                    if dropped {
                        drop(lt, end, &mut copied);
                    }
                }
            }
            Some(c) if c.is_ascii_alphabetic() => {
                let name_at = lt + 1;
                let name_end = name_end(bytes, name_at);
                let end = tag_end(bytes, name_end);
                i = end;
                let name = &bytes[name_at..name_end];
                let self_closing = end >= 2 && bytes[end - 2] == b'/' && bytes[end - 1] == b'>';
                if name.eq_ignore_ascii_case(b"plaintext") {
                    break;
                }
                if !counted(name) || self_closing {
                    continue;
                }
                // A script's or a style's tags are kept at any depth: without
                // them its code would be read as the page's text (it holds no
                // element, so it adds one level at most).
                let raw_text = is_in(name, RAW_TEXT);
                let dropped = open.len() >= max && !raw_text;
                if dropped {
                    drop(lt, end, &mut copied);
                }
                open.push(Open {
                    at: name_at as u32,
                    len: (name_end - name_at).min(u16::MAX as usize) as u16,
                    dropped,
                });
                if raw_text {
                    // Its text runs to its end tag, which the loop reads next.
                    let mut closing = Vec::with_capacity(name.len() + 2);
                    closing.extend_from_slice(b"</");
                    closing.extend_from_slice(name);
                    i = find_ignoring_case(bytes, end, &closing).unwrap_or(bytes.len());
                }
            }
            _ => {}
        }
    }
    match out {
        None => Cow::Borrowed(html),
        Some(mut out) => {
            out.push_str(&html[copied..]);
            Cow::Owned(out)
        }
    }
}

/// Whether the element named `name` is counted in the depth.
fn counted(name: &[u8]) -> bool {
    !is_in(name, VOID) && !is_in(name, OPTIONAL_END)
}

fn is_in(name: &[u8], list: &[&str]) -> bool {
    list.iter().any(|n| n.as_bytes().eq_ignore_ascii_case(name))
}

/// Where a tag's name that starts at `from` ends.
fn name_end(bytes: &[u8], from: usize) -> usize {
    bytes[from..]
        .iter()
        .position(|b| b.is_ascii_whitespace() || *b == b'/' || *b == b'>')
        .map_or(bytes.len(), |n| from + n)
}

/// Just past the `>` of a start tag whose attributes start at `from`, a
/// quoted value's `>` being no end.
fn tag_end(bytes: &[u8], from: usize) -> usize {
    let mut i = from;
    while i < bytes.len() {
        match bytes[i] {
            b'>' => return i + 1,
            quote @ (b'"' | b'\'') => match bytes[i + 1..].iter().position(|b| *b == quote) {
                Some(n) => i += n + 2,
                None => return bytes.len(),
            },
            _ => i += 1,
        }
    }
    bytes.len()
}

fn find(bytes: &[u8], from: usize, needle: &[u8]) -> Option<usize> {
    bytes
        .get(from..)?
        .windows(needle.len())
        .position(|w| w == needle)
        .map(|n| from + n)
}

fn find_ignoring_case(bytes: &[u8], from: usize, needle: &[u8]) -> Option<usize> {
    bytes
        .get(from..)?
        .windows(needle.len())
        .position(|w| w.eq_ignore_ascii_case(needle))
        .map(|n| from + n)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_page_within_the_depth_is_left_as_it_is() {
        let page = "<html><body><main><div><p>Un<p>Deux<ul><li>a<li>b</ul>\
                    <br><img src=x><svg><path d='M0 0'/></svg></div></main></body></html>";
        assert!(matches!(flatten_past(page, 3), Cow::Borrowed(_)));
    }

    #[test]
    fn tags_past_the_depth_are_dropped_and_their_text_kept() {
        let page = "<div><section><div class=a>Texte <b>gras</b></div> fin</section></div>";
        assert_eq!(
            flatten_past(page, 2),
            "<div><section>Texte gras fin</section></div>"
        );
        let deep = format!("{}texte{}", "<div>".repeat(1_000), "</div>".repeat(1_000));
        assert_eq!(
            flatten(&deep),
            format!("{}texte{}", "<div>".repeat(256), "</div>".repeat(256))
        );
    }

    #[test]
    fn comments_scripts_and_quoted_values_hold_no_tags() {
        let page = "<div><div><!-- <div><div> --><script>if (a<b) x='<div>'</script>\
                    <span title='a > b <div>'>x</span><div>y</div></div></div>";
        assert_eq!(
            flatten_past(page, 2),
            "<div><div><!-- <div><div> --><script>if (a<b) x='<div>'</script>xy</div></div>"
        );
        // Unclosed paragraphs and cells are siblings, not depth.
        let paragraphs = format!("<div>{}</div>", "<p>un ".repeat(1_000));
        assert!(matches!(flatten_past(&paragraphs, 2), Cow::Borrowed(_)));
    }

    #[test]
    fn an_end_tag_closes_what_it_matches_within_reach() {
        // `</section>` closes the unclosed `<b>` too: the `<i>` after it is
        // at depth 1 again, kept.
        let page = "<section><b>x</section><i>y</i>";
        assert!(matches!(flatten_past(page, 1), Cow::Owned(_)));
        assert_eq!(flatten_past(page, 1), "<section>x</section><i>y</i>");
        // An end tag of nothing open is left.
        assert_eq!(flatten_past("<a></q>x</a>", 1), "<a></q>x</a>");
    }
}

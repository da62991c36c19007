//! A page's elements nested deeper than [`MAX_DEPTH`], and those past its
//! [`MAX_ELEMENTS`]-th, are flattened before it is parsed: their tags
//! dropped, their text kept (a script's or a style's past the count goes
//! whole, its code being no text).
//!
//! A hostile or broken page of a few kilobytes (`<div>` seven hundred times)
//! overflowed the stack of the Markdown converter, which walks the tree
//! recursively, and aborted the whole server; one of 100,000 nested `<div>`
//! (1.1 MB, under the page limit) kept the HTML parser busy for minutes,
//! since each start tag walks the stack of open elements. Browsers bound the
//! tree the same way (Blink adds elements past depth 512 as siblings).
//! Real pages nest a few dozen elements deep.
//!
//! This is a scan of the tags, not a parse, that follows the parser's rules
//! where they close elements: an end tag closes what is open above its
//! element, unless a boundary stands between (`</span>` does not close
//! across a `div`, `</div>` across a table's cell); a new `p`, `li`, `dd`,
//! `td`, `tr` closes the one before as HTML does; void elements are none;
//! `/>` closes only inside SVG and MathML; comments, scripts and styles
//! hold no tags. Where it cannot tell, it counts an element as still open:
//! it may flatten a sloppy page sooner than needed (its text kept), never
//! let a deep one through.

use std::borrow::Cow;

/// The deepest element kept. The converter's recursion takes about 3 KB of
/// stack a level, which a 2 MiB thread holds for about 600 levels.
pub const MAX_DEPTH: usize = 256;

/// The most elements kept of a page. The page is parsed into a tree, and
/// its content into a second one for the Markdown converter, each of a
/// couple of hundred bytes a node: extracting a 2 MiB page of 218,000
/// small elements peaked a process at 86 MB, at 28 MB with this bound (a
/// catalogue of 36,000 elements in 660 KB, under it, at 21 MB).
/// Real pages hold a few thousand; a long article or a large catalogue
/// some tens of thousands: their elements past it read as one text, and
/// their links past it are not followed.
pub const MAX_ELEMENTS: usize = 50_000;

/// How many open elements an end tag, or a start tag that closes one
/// before it, is matched against, from the innermost: a page of unmatched
/// end tags under a deep stack must not make the scan quadratic. A parser
/// would close those between; here a tag that matches none of them closes
/// nothing (the scan counts more depth, never less).
const MATCHED_WITHIN: usize = 64;

/// No end tag.
const VOID: &[&str] = &[
    "area", "base", "basefont", "bgsound", "br", "col", "embed", "frame", "hr", "image", "img",
    "input", "keygen", "link", "meta", "param", "source", "track", "wbr",
];

/// Their content is text up to their end tag.
const RAW_TEXT: &[&str] = &[
    "iframe", "noembed", "noframes", "noscript", "script", "style", "textarea", "title", "xmp",
];

/// HTML's scope boundaries: no end tag, and no new `p`, closes an element
/// across one of them (SVG's and MathML's roots stand for theirs).
#[rustfmt::skip]
const SCOPE: &[&str] = &[
    "applet", "button", "caption", "html", "marquee", "math", "object", "svg", "table", "td",
    "template", "th",
];

/// HTML's "special" elements: an end tag of any other element does not
/// close across one of them, nor does a new `li`, `dd` or `dt` (but
/// across `address`, `div` and `p`).
#[rustfmt::skip]
const SPECIAL: &[&str] = &[
    "address", "applet", "article", "aside", "blockquote", "body", "button", "caption", "center",
    "colgroup", "dd", "details", "dialog", "dir", "div", "dl", "dt", "fieldset", "figcaption",
    "figure", "footer", "form", "frameset", "h1", "h2", "h3", "h4", "h5", "h6", "head", "header",
    "hgroup", "html", "iframe", "li", "listing", "main", "marquee", "math", "menu", "nav",
    "noembed", "noframes", "noscript", "object", "ol", "p", "plaintext", "pre", "script", "search",
    "section", "select", "style", "summary", "svg", "table", "tbody", "td", "template", "textarea",
    "tfoot", "th", "thead", "title", "tr", "ul", "xmp",
];

/// A start tag of one of these closes an open `p` (within its scope): the
/// blocks of a text, whose edges part its words.
#[rustfmt::skip]
pub(super) const CLOSES_P: &[&str] = &[
    "address", "article", "aside", "blockquote", "center", "dd", "details", "dialog", "dir", "div",
    "dl", "dt", "fieldset", "figcaption", "figure", "footer", "form", "h1", "h2", "h3", "h4", "h5",
    "h6", "header", "hgroup", "li", "listing", "main", "menu", "nav", "ol", "p", "pre", "search",
    "section", "summary", "table", "ul", "xmp",
];

const HEADINGS: &[&str] = &["h1", "h2", "h3", "h4", "h5", "h6"];

/// An open element: where its name is in the page, whether its tags are
/// dropped, and whether it is SVG or MathML or inside them.
struct Open {
    at: u32,
    len: u16,
    dropped: bool,
    foreign: bool,
}

impl Open {
    fn name<'a>(&self, bytes: &'a [u8]) -> &'a [u8] {
        &bytes[self.at as usize..self.at as usize + self.len as usize]
    }
}

/// The innermost of the open elements named one of `names`, within
/// [`MATCHED_WITHIN`] of the innermost and with no element above it that
/// `stops` at.
fn nearest(
    open: &[Open],
    bytes: &[u8],
    names: &[&[u8]],
    stops: impl Fn(&[u8]) -> bool,
) -> Option<usize> {
    let from = open.len().saturating_sub(MATCHED_WITHIN);
    for k in (from..open.len()).rev() {
        let name = open[k].name(bytes);
        if names.iter().any(|n| n.eq_ignore_ascii_case(name)) {
            return Some(k);
        }
        if stops(name) {
            return None;
        }
    }
    None
}

/// Stops at one of `list`.
fn any_of(list: &'static [&'static str]) -> impl Fn(&[u8]) -> bool {
    move |name| is_in(name, list)
}

/// What a start tag of `name` closes first, as HTML's tree builder does:
/// an open `p` for a block, the `li`, `dd`/`dt`, cell, row or table section
/// before, a heading or an `option` right above.
fn close_before(open: &mut Vec<Open>, bytes: &[u8], name: &[u8]) {
    let close = |open: &mut Vec<Open>, names: &[&[u8]], stops: &dyn Fn(&[u8]) -> bool| {
        if let Some(k) = nearest(open, bytes, names, stops) {
            open.truncate(k);
        }
    };
    // A new `li`, `dd` or `dt` closes the one before across any element
    // but a special one, and `address`, `div` and `p` are not that.
    let special_but_address_div_p =
        |n: &[u8]| is_in(n, SPECIAL) && !is_in(n, &["address", "div", "p"]);
    if is_in(name, CLOSES_P) {
        close(open, &[b"p"], &any_of(SCOPE));
    }
    let top_is =
        |open: &Vec<Open>, names: &[&str]| open.last().is_some_and(|o| is_in(o.name(bytes), names));
    let lower = name.to_ascii_lowercase();
    match lower.as_slice() {
        b"li" => close(open, &[b"li"], &special_but_address_div_p),
        b"dd" | b"dt" => close(open, &[b"dd", b"dt"], &special_but_address_div_p),
        b"td" | b"th" => close(open, &[b"td", b"th"], &any_of(&["tr", "table"])),
        b"tr" => close(open, &[b"tr"], &any_of(&["table"])),
        b"thead" | b"tbody" | b"tfoot" => {
            close(open, &[b"thead", b"tbody", b"tfoot"], &any_of(&["table"]))
        }
        b"option" | b"optgroup" if top_is(open, &["option"]) => {
            open.pop();
        }
        _ if is_in(name, HEADINGS) && top_is(open, HEADINGS) => {
            open.pop();
        }
        _ => {}
    }
}

/// `html` with the tags of elements past [`MAX_DEPTH`] or past the
/// [`MAX_ELEMENTS`]-th dropped; as it is (no copy) when none is.
pub fn flatten(html: &str) -> Cow<'_, str> {
    flatten_within(html, MAX_DEPTH, MAX_ELEMENTS)
}

fn flatten_within(html: &str, max: usize, max_elements: usize) -> Cow<'_, str> {
    let bytes = html.as_bytes();
    let mut open: Vec<Open> = Vec::new();
    // Start tags read, void elements' included.
    let mut elements = 0usize;
    let mut out: Option<String> = None;
    let mut copied = 0;
    // Leaves the tag from `from` to `to` out of the copy.
    let mut drop_tag = |from: usize, to: usize, copied: &mut usize| {
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
                if is_in(name, VOID) {
                    continue;
                }
                // A special element's end tag closes what is above it in
                // its scope; any other's, what is above it up to the first
                // special element.
                let stops = if is_in(name, SPECIAL) { SCOPE } else { SPECIAL };
                if let Some(k) = nearest(&open, bytes, &[name], any_of(stops)) {
                    let dropped = open[k].dropped;
                    open.truncate(k);
                    if dropped {
                        drop_tag(lt, end, &mut copied);
                    }
                }
            }
            Some(c) if c.is_ascii_alphabetic() => {
                let name_at = lt + 1;
                let name_end = name_end(bytes, name_at);
                let end = tag_end(bytes, name_end);
                i = end;
                let name = &bytes[name_at..name_end];
                // Inherited: the innermost element says it.
                let foreign = open.last().is_some_and(|o| o.foreign);
                let self_closing = end >= 2 && bytes[end - 2] == b'/' && bytes[end - 1] == b'>';
                elements += 1;
                let counted_out = elements > max_elements;
                if is_in(name, VOID) || (foreign && self_closing) {
                    if counted_out {
                        drop_tag(lt, end, &mut copied);
                    }
                    continue;
                }
                if !foreign && name.eq_ignore_ascii_case(b"plaintext") {
                    break;
                }
                if !foreign {
                    close_before(&mut open, bytes, name);
                }
                // A script's or a style's tags are kept at any depth: without
                // them its code would be read as the page's text (it holds no
                // element, so it adds one level at most).
                let raw_text = !foreign && is_in(name, RAW_TEXT);
                if raw_text && counted_out {
                    // Gone whole, its end tag with it: what it holds is no
                    // text of the page.
                    let closing = [b"</", name].concat();
                    let closed = find_ignoring_case(bytes, end, &closing)
                        .and_then(|at| find(bytes, at, b">"))
                        .map_or(bytes.len(), |at| at + 1);
                    drop_tag(lt, closed, &mut copied);
                    i = closed;
                    continue;
                }
                let dropped = (open.len() >= max || counted_out) && !raw_text;
                if dropped {
                    drop_tag(lt, end, &mut copied);
                }
                open.push(Open {
                    at: name_at as u32,
                    len: (name_end - name_at).min(u16::MAX as usize) as u16,
                    dropped,
                    foreign: foreign
                        || name.eq_ignore_ascii_case(b"svg")
                        || name.eq_ignore_ascii_case(b"math"),
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

    fn flatten_past(html: &str, max: usize) -> Cow<'_, str> {
        flatten_within(html, max, MAX_ELEMENTS)
    }

    /// Past the count, tags go and text stays, a void element's too; a
    /// script or a style goes whole; end tags of elements kept stay.
    #[test]
    fn elements_past_the_count_are_read_as_text() {
        let page = "<div><p>a</p><p>b<br>c</p><p>d<b>e</b><script>if (x<y) {}</script>\
                    <img src=x><style>p{}</style>f</p></div>";
        assert!(matches!(flatten_within(page, 256, 12), Cow::Borrowed(_)));
        assert_eq!(
            flatten_within(page, 256, 4),
            "<div><p>a</p><p>b<br>c</p>def</div>"
        );
        assert_eq!(
            flatten_within(page, 256, 6),
            "<div><p>a</p><p>b<br>c</p><p>d<b>e</b>f</p></div>"
        );
    }

    #[test]
    fn a_page_within_the_depth_is_left_as_it_is() {
        // html, body, main, div, ul, li: 6 deep; the second `p` and `li`
        // close the first; `br`, `img` and the SVG path hold nothing.
        let page = "<html><body><main><div><p>Un<p>Deux<ul><li>a<li>b</ul>\
                    <br><img src=x><svg><path d='M0 0'/></svg></div></main></body></html>";
        assert!(matches!(flatten_past(page, 6), Cow::Borrowed(_)));
        assert!(matches!(flatten_past(page, 5), Cow::Owned(_)));
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
        // `<script/>` opens a script all the same: its text is no tag.
        let page = "<div><script/>x = '<div>';</script>y</div>";
        assert!(matches!(flatten_past(page, 2), Cow::Borrowed(_)));
        // A script never closed holds the rest of the page: no tag of it
        // counts, none is dropped.
        let page = format!("<div><script>x = 1;{}", "<div>".repeat(10));
        assert!(matches!(flatten_past(&page, 2), Cow::Borrowed(_)));
    }

    /// Pages whose elements a parser keeps open although their tags look
    /// closed or closing are flattened too: each of these, a few
    /// kilobytes, nests thousands deep.
    #[test]
    fn what_a_parser_keeps_open_is_counted() {
        for (what, page) in [
            // Optional end tags that close nothing here.
            ("optgroup", "<optgroup>".repeat(3_000)),
            ("rb", "<rb>".repeat(5_000)),
            // `/>` closes nothing on an HTML element.
            ("div/", "<div/>".repeat(3_000)),
            // `</span>` does not close across the `div` above it.
            ("span div", "<span><div></span>".repeat(3_000)),
            // A new `li` does not close across a `section`.
            ("li section", "<li><section>".repeat(3_000)),
        ] {
            assert!(matches!(flatten(&page), Cow::Owned(_)), "{what}");
        }
    }

    /// Sloppy pages the parser keeps shallow are left whole: an unclosed
    /// `font` in each cell, an unclosed `span` in each paragraph, an
    /// unclosed `p` before each block, each a thousand times.
    #[test]
    fn what_a_parser_closes_is_not_counted() {
        for (what, page) in [
            (
                "font in cells",
                format!(
                    "<table>{}</table>",
                    "<tr><td><font face=Arial>case</td></tr>".repeat(1_000)
                ),
            ),
            ("span in p", "<p><span style=x>texte</p>".repeat(1_000)),
            ("p before div", "<p>texte<div>bloc</div>".repeat(1_000)),
            ("p li td", format!("<ul>{}</ul>", "<li><p>un".repeat(1_000))),
            (
                "rows",
                format!("<table>{}</table>", "<tr><td>a<td>b".repeat(1_000)),
            ),
        ] {
            let page = format!(
                "<html><body><main>{page}<h2>Tarifs</h2><a href=/t>T</a></main></body></html>"
            );
            assert!(matches!(flatten(&page), Cow::Borrowed(_)), "{what}");
        }
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

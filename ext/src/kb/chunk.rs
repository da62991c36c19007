//! Cutting a Markdown document into chunks of about 800 to 1,200
//! characters along its headings, each with the path of headings above it.
//!
//! A chunk is what a search answers, so it should hold one topic and read
//! well on its own: a section stays whole when it fits, small neighbouring
//! sections are joined (a "Contact" of three lines alone ranks poorly and
//! reads poorly; so does each question of a FAQ), and a long section is
//! cut between paragraphs, else between lines (a table's rows, each piece
//! a table goes on in starting with its header row; a code block's lines,
//! each piece it goes on in starting with its opening fence), else after a
//! sentence, else between words, the tail of one joining the small
//! sections after it. The cuts are chosen all at once, as the cheapest
//! of all the ways to cut the document (see [`split`]), not one after the
//! other. A chunk's heading path is the deepest one above all of its
//! text, so that what a search shows over a chunk is true of all of it:
//! sections joined across top-level headings are under the document's
//! title. Headings are read as CommonMark reads them (see [`marks`]): ATX
//! (`## Tarifs`) and setext (`Tarifs` over `------`), none in fenced code.

use std::borrow::Cow;
use std::collections::VecDeque;
use std::rc::Rc;

/// Pieces shorter than this cost more the shorter they are.
const MIN_CHARS: usize = 800;
/// No chunk is longer, except for a piece of a table whose header row is
/// repeated over it, or of a code block whose opening fence is, which it
/// may pass by that header.
const MAX_CHARS: usize = 1200;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Chunk {
    /// `Tarifs > Coupes`: the headings above every line of the chunk.
    pub heading: String,
    pub text: String,
}

/// A line's heading level and name, when it is an ATX heading as
/// CommonMark reads one: up to three spaces, one to six `#` followed by a
/// space, a tab or nothing; a closing run of `#` dropped only after blank
/// space, so that `# Langage C#` is "Langage C#".
fn heading_of(line: &str) -> Option<(usize, &str)> {
    let line = indented(line)?;
    let level = line.bytes().take_while(|b| *b == b'#').count();
    let rest = line[level..].trim_end_matches(blank);
    if !(1..=6).contains(&level) || !(rest.is_empty() || rest.starts_with([' ', '\t'])) {
        return None;
    }
    let name = rest.trim_start_matches(blank);
    let open = name.trim_end_matches('#');
    Some(if open.is_empty() || open.ends_with([' ', '\t']) {
        (level, open.trim_end_matches(blank))
    } else {
        (level, name)
    })
}

/// `line` without its indentation, when it has at most three spaces of it:
/// four make it code in CommonMark, no heading nor fence.
fn indented(line: &str) -> Option<&str> {
    let lead = spaces(line);
    (lead <= 3).then(|| &line[lead..])
}

/// A fence of a fenced code block, as CommonMark reads one: three or more
/// backticks or tildes. Answers its character, its length, and what
/// follows it (an info string, `bash` of "```bash"), which a closing fence
/// may not have and a backtick fence may not hold a backtick in.
fn fence_of(text: &str) -> Option<(u8, usize, &str)> {
    let c = *text
        .as_bytes()
        .first()
        .filter(|c| matches!(c, b'`' | b'~'))?;
    let len = text.bytes().take_while(|b| *b == c).count();
    let info = &text[len..];
    (len >= 3 && !(c == b'`' && info.contains('`'))).then_some((c, len, info))
}

/// The width of a list item's marker at the start of `text`: `-`, `*`,
/// `+`, or one to nine digits and `.` or `)`.
fn list_marker(text: &str) -> Option<usize> {
    if text.starts_with(['-', '*', '+']) {
        return Some(1);
    }
    let digits = text.bytes().take_while(u8::is_ascii_digit).count();
    ((1..=9).contains(&digits) && text[digits..].starts_with(['.', ')'])).then_some(digits + 1)
}

/// Leading spaces of `text`.
fn spaces(text: &str) -> usize {
    text.len() - text.trim_start_matches(' ').len()
}

/// A line's block quote and list item markers (`> `, `- `, `1. `): how
/// many quote markers, the column its content starts at inside the
/// innermost quote (the list markers' width and the spaces after them),
/// and what follows the markers.
fn containers(line: &str) -> (usize, usize, &str) {
    let (mut quotes, mut column, mut rest) = (0, 0, line);
    loop {
        let lead = spaces(rest);
        let after = &rest[lead..];
        if lead <= 3 && after.starts_with('>') {
            quotes += 1;
            column = 0;
            rest = after[1..].strip_prefix(' ').unwrap_or(&after[1..]);
            continue;
        }
        if let Some(marker) = list_marker(after) {
            let gap = spaces(&after[marker..]);
            if (1..=4).contains(&gap) {
                column += lead + marker + gap;
                rest = &after[marker + gap..];
                continue;
            }
        }
        return (quotes, column, rest);
    }
}

/// `line` without `quotes` quote markers (`> `), when it has them.
fn unquoted(line: &str, quotes: usize) -> Option<&str> {
    let mut rest = line;
    for _ in 0..quotes {
        let lead = spaces(rest);
        let after = rest[lead..].strip_prefix('>').filter(|_| lead <= 3)?;
        rest = after.strip_prefix(' ').unwrap_or(after);
    }
    Some(rest)
}

/// An open fenced code block.
#[derive(Clone, Copy)]
struct Fence {
    c: u8,
    len: usize,
    /// The column its opening fence starts at, inside `quotes` quotes.
    column: usize,
    quotes: usize,
    /// Whether it is inside a list item: a line of text left of its column
    /// ends the item, and so the block.
    in_item: bool,
}

/// A line in a fenced code block.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Fenced {
    /// The line its block's opening fence is on.
    pub opening: usize,
    /// Whether it is the block's closing fence.
    pub closing: bool,
}

/// Per line of `lines`: whether it is in a fenced code block, its fences
/// included. A `# comment` of a shell script pasted in a document is no
/// heading, and a `| grep` line no table row. As in CommonMark, a fence
/// may open in a list item (`- ```bash`, or indented under `1. Tapez :`)
/// or a quote, and the block then ends with its item or quote; a fence
/// left open elsewhere runs to the document's end.
fn code_lines(lines: &[&str]) -> Vec<Option<Fenced>> {
    // The open block, and the line its opening fence is on.
    let mut open: Option<(Fence, usize)> = None;
    // Whether the last line of text was in a list item: its marker's, or
    // indented under one.
    let mut in_item = false;
    lines
        .iter()
        .enumerate()
        .map(|(i, line)| {
            if let Some((f, opening)) = open {
                let rest = unquoted(line, f.quotes);
                let text = rest.filter(|r| !r.trim_matches(blank).is_empty());
                match (rest, text) {
                    // Its quote or list item ended: so did the block.
                    (None, _) => open = None,
                    (Some(_), Some(r)) if f.in_item && spaces(r) < f.column => open = None,
                    (Some(r), _) => {
                        let lead = spaces(r);
                        let closing = fence_of(&r[lead..]).is_some_and(|(c, n, info)| {
                            c == f.c
                                && n >= f.len
                                && info.trim_matches(blank).is_empty()
                                && lead.saturating_sub(f.column) <= 3
                        });
                        if closing {
                            open = None;
                        }
                        return Some(Fenced { opening, closing });
                    }
                }
            }
            if line.trim_matches(blank).is_empty() {
                return None;
            }
            let (quotes, column, rest) = containers(line);
            let lead = spaces(rest);
            let indented_under_item = in_item && lead > 0 && column == 0;
            in_item = column > 0 || indented_under_item;
            let (c, len, _) =
                fence_of(&rest[lead..]).filter(|_| lead <= 3 || indented_under_item)?;
            let fence = Fence {
                c,
                len,
                column: column + lead,
                quotes,
                in_item,
            };
            open = Some((fence, i));
            Some(Fenced {
                opening: i,
                closing: false,
            })
        })
        .collect()
}

/// What the lines of a document are, as CommonMark reads them, for the
/// sections and the snippets.
pub(super) struct Marks<'a> {
    /// Per line: the level and name of the heading it starts.
    pub starts: Vec<Option<(usize, Cow<'a, str>)>>,
    /// Per line: whether it is (part of) a heading: an ATX heading's line,
    /// or a setext heading's text and underline.
    pub heading: Vec<bool>,
    /// Per line: whether it is in a fenced code block, and which (see
    /// [`code_lines`]).
    pub code: Vec<Option<Fenced>>,
}

/// A setext heading's underline: a run of `=` (level 1) or `-` (level 2),
/// up to three spaces before it and blank space after it.
fn underline_of(line: &str) -> Option<usize> {
    let run = indented(line)?.trim_end_matches(blank);
    let level = match run.as_bytes().first()? {
        b'=' => 1,
        b'-' => 2,
        _ => return None,
    };
    run.bytes().all(|b| b == run.as_bytes()[0]).then_some(level)
}

/// Whether `line` opens a list item or a block quote: a line under it
/// continues that block, and a `---` under such a paragraph is a rule.
fn opens_block(line: &str) -> bool {
    let line = line.trim_start_matches(blank);
    line.starts_with('>')
        || list_marker(line)
            .is_some_and(|m| line[m..].is_empty() || line[m..].starts_with([' ', '\t']))
}

/// Reads `lines` as CommonMark does for what a chunk needs: fenced code,
/// ATX headings (`## Tarifs`) and setext ones (`Tarifs` over `======`,
/// as some editors and converters write them; several lines of text over
/// it make one name). A `---` under a list item, a quote or a table row,
/// or after a blank line, is a rule, not an underline.
pub(super) fn marks<'a>(lines: &[&'a str]) -> Marks<'a> {
    let code = code_lines(lines);
    let mut starts: Vec<Option<(usize, Cow<'a, str>)>> = Vec::with_capacity(lines.len());
    let mut heading = Vec::with_capacity(lines.len());
    /// The paragraph the line before is in.
    enum Paragraph {
        None,
        /// Plain text from this line on: an underline makes it a heading.
        Plain(usize),
        /// A list item's or a quote's, its lazy lines included.
        InBlock,
    }
    let mut paragraph = Paragraph::None;
    // YAML front matter (`---`, `title: …`, `---` at the very start, as
    // static-site generators write it) is no setext heading.
    let front = front_matter(lines);
    for (i, line) in lines.iter().enumerate() {
        if i < front {
            starts.push(None);
            heading.push(false);
            continue;
        }
        let atx = heading_of(line).filter(|_| code[i].is_none());
        // An underline is never code: a paragraph's next line is code only
        // when it opens a fence.
        if let (Some(level), Paragraph::Plain(first)) = (underline_of(line), &paragraph) {
            let first = *first;
            let name: Vec<&str> = lines[first..i]
                .iter()
                .map(|l| l.trim_matches(blank))
                .collect();
            starts[first] = Some((level, Cow::Owned(name.join(" "))));
            heading[first..].fill(true);
            starts.push(None);
            heading.push(true);
            paragraph = Paragraph::None;
            continue;
        }
        let text = code[i].is_none()
            && atx.is_none()
            && !line.trim_matches(blank).is_empty()
            && !table_row(line)
            && !thematic_break(line);
        paragraph = match paragraph {
            _ if !text => Paragraph::None,
            _ if opens_block(line) => Paragraph::InBlock,
            // Four spaces before text that starts no paragraph make it
            // indented code.
            Paragraph::None if line.len() - line.trim_start_matches(blank).len() >= 4 => {
                Paragraph::None
            }
            Paragraph::None => Paragraph::Plain(i),
            going_on => going_on,
        };
        starts.push(atx.map(|(level, name)| (level, Cow::Borrowed(name))));
        heading.push(atx.is_some());
    }
    Marks {
        starts,
        heading,
        code,
    }
}

/// How many lines at the start of `lines` are YAML front matter: a `---`
/// line first, up to the next `---` or `...` line; 0 without one.
fn front_matter(lines: &[&str]) -> usize {
    if lines.first().map(|l| l.trim_end_matches(blank)) != Some("---") {
        return 0;
    }
    lines
        .iter()
        .skip(1)
        .position(|l| matches!(l.trim_end_matches(blank), "---" | "..."))
        .map_or(0, |end| end + 2)
}

/// A thematic break (a rule): three or more `-`, `*` or `_`, spaces and
/// tabs between them allowed, up to three spaces before.
fn thematic_break(line: &str) -> bool {
    let Some(rest) = indented(line) else {
        return false;
    };
    let marks: Vec<u8> = rest
        .bytes()
        .filter(|b| !matches!(b, b' ' | b'\t' | b'\r'))
        .collect();
    marks.len() >= 3
        && matches!(marks[0], b'-' | b'*' | b'_')
        && marks.iter().all(|b| *b == marks[0])
}

/// The longest heading name a chunk's path shows, in characters: a
/// heading line of 100,000 characters (a document pasted with no line
/// break) is no name to show over each of its chunks.
const MAX_HEADING_NAME: usize = 200;

/// `name` as a path shows it: cut to [`MAX_HEADING_NAME`] characters, "…"
/// saying so.
fn heading_name(name: &str) -> String {
    match name.char_indices().nth(MAX_HEADING_NAME) {
        Some((cut, _)) => format!("{}…", name[..cut].trim_end()),
        None => name.to_string(),
    }
}

/// Blank space a cut may go through: only ASCII's. French puts a no-break
/// space before "€", ":" or "?", which no cut should part from its word.
fn blank(c: char) -> bool {
    matches!(c, ' ' | '\t' | '\n' | '\r')
}

/// What each line of a document is to the cuts: the heading path of its
/// section, and where its section may be cut.
struct Lines {
    /// The line of the document the text cut starts on: the lines below
    /// are the document's, blank ones before the text included.
    first: usize,
    /// Per line: its section (an index into `paths`).
    section: Vec<usize>,
    /// Per section: the headings above it (the document's title for text
    /// before any heading), and whether it is longer than a chunk.
    /// A heading's name is shared by every path under it, and compared by
    /// identity: two sections named alike under different headings share
    /// no heading.
    paths: Vec<Vec<Rc<str>>>,
    long: Vec<bool>,
    /// Per line: whether it is a heading.
    heading: Vec<bool>,
    /// Per line: the table header a piece starting on it starts with (an
    /// index into `headers`), when it is a row of a table's body.
    table: Vec<Option<usize>>,
    /// Per line: the opening fence a piece starting in it (at its start or
    /// inside it) starts with (an index into `headers`), when it is in a
    /// fenced code block after that fence.
    fence: Vec<Option<usize>>,
    /// What a piece starts with, each ending with its newline (and, for
    /// a fence in a list item, the item's indentation).
    headers: Vec<String>,
    /// Per line: whether no piece may start on it: a table's delimiter
    /// row and first body row belong with the header row above them, a
    /// code block's first line with its opening fence, and its closing
    /// fence with the code above it.
    glued: Vec<bool>,
}

impl Lines {
    fn read(text: &str, title: &str) -> Self {
        let lines: Vec<&str> = text.split('\n').collect();
        let n = lines.len();
        let Marks {
            starts,
            heading,
            code,
        } = marks(&lines);
        let mut out = Lines {
            section: Vec::with_capacity(n),
            paths: vec![vec![Rc::from(title)]],
            long: Vec::new(),
            heading,
            table: vec![None; n],
            fence: vec![None; n],
            headers: Vec::new(),
            glued: vec![false; n],
            first: 0,
        };
        // Sections: each heading starts one. A section is long when its
        // text, as a chunk would hold it (from its first character that is
        // not blank space to its last, the blank lines and spaces between
        // counted), is longer than a chunk.
        let mut stack: Vec<(usize, Rc<str>)> = Vec::new();
        let mut spans: Vec<Option<(usize, usize)>> = vec![None];
        // Characters of the document before the line.
        let mut at = 0;
        for (line, start) in lines.iter().zip(starts) {
            if let Some((level, name)) = start {
                stack.retain(|(l, _)| *l < level);
                stack.push((level, Rc::from(heading_name(&name).as_str())));
                out.paths
                    .push(stack.iter().map(|(_, n)| Rc::clone(n)).collect());
                spans.push(None);
            }
            out.section.push(out.paths.len() - 1);
            let count = line.chars().count();
            let lead = line.chars().take_while(|c| blank(*c)).count();
            if lead < count {
                let trail = line.chars().rev().take_while(|c| blank(*c)).count();
                let span = spans.last_mut().expect("one section at least");
                let first = span.map_or(at + lead, |(first, _)| first);
                *span = Some((first, at + count - trail));
            }
            at += count + 1;
        }
        out.long = spans
            .iter()
            .map(|span| span.is_some_and(|(first, end)| end - first > MAX_CHARS))
            .collect();
        // Tables: a piece that starts on a row of a table's body starts
        // with the table's header row and delimiter row (a price list's
        // second half keeps its column names, "Prestation", "Prix", which a
        // search matches and a reader needs). A header wider than a
        // quarter of a chunk is not repeated: it would crowd out the rows.
        let mut current: Option<Option<usize>> = None;
        for i in 0..n {
            if code[i].is_some() || !table_row(lines[i]) {
                current = None;
            } else if let Some(header) = table_header(&lines, i) {
                // The row above is this table's header, not a body row of
                // a table right before it.
                out.table[i - 1] = None;
                out.glued[i] = true;
                if lines.get(i + 1).is_some_and(|next| table_row(next)) {
                    out.glued[i + 1] = true;
                }
                current =
                    Some((header.chars().count() <= MAX_CHARS / 4).then_some(out.headers.len()));
                out.headers.push(format!("{header}\n"));
            } else if let Some(h) = current {
                out.table[i] = h;
            }
        }
        // Fenced code: a piece that starts in a block starts with its
        // opening fence (a script's second half stays code: a `# comment`
        // in it is no heading to a reader, nor to the snippets). No piece
        // starts on the block's first line (one would end on the bare
        // fence, the next repeat it) nor on its closing fence (it stays
        // with the code above it). The fence is repeated only where, alone
        // over the piece, it reads as it does in the document: a fence
        // (not one indented four spaces under a list item), of a block that
        // ends on its closing fence or with the document (not one that its
        // list item or quote ends, whose marker is on a line above the
        // fence), and no wider than a quarter of a chunk (a long info
        // string).
        let mut i = 0;
        while i < n {
            let Some(Fenced { opening, .. }) = code[i].filter(|f| f.opening == i) else {
                i += 1;
                continue;
            };
            let last = (i + 1..n)
                .take_while(|&l| code[l].is_some_and(|f| f.opening == opening))
                .last()
                .unwrap_or(opening);
            let closed = code[last].is_some_and(|f| f.closing);
            let ends_as_alone = closed || last == n - 1;
            let fence = lines[opening];
            // A fence on a list item's marker line (`- ```bash`): the
            // piece's first line, which starts at its first character, is
            // given the item's indentation back, to stay in the item.
            let (quotes, column, rest) = containers(fence);
            let indent = if quotes == 0 && column > 0 {
                column + spaces(rest)
            } else {
                0
            };
            let prefix = format!("{fence}\n{}", " ".repeat(indent));
            let repeated = (ends_as_alone
                && prefix.chars().count() <= MAX_CHARS / 4 + 1
                && code_lines(&[fence])[0].is_some())
            .then(|| {
                out.headers.push(prefix);
                out.headers.len() - 1
            });
            if let Some(first) =
                (opening + 1..=last).find(|&l| !lines[l].trim_matches(blank).is_empty())
            {
                out.glued[first] = true;
            }
            out.fence[opening + 1..=last].fill(repeated);
            out.glued[last] |= closed;
            i = last + 1;
        }
        out
    }

    /// The lines a piece starting at `cut` starts with (an index into
    /// `headers`): a table's header when it starts a row of the table's
    /// body, a code block's opening fence when it starts in the block.
    fn header(&self, cut: &Cut) -> Option<usize> {
        (cut.start_line > cut.end_line)
            .then(|| self.table[cut.start_line])
            .flatten()
            .or(self.fence[cut.start_line])
    }
}

/// Where a piece may end and the next one begin: a run of blank space, or
/// a place inside a word longer than a chunk.
#[derive(Debug, Clone, Copy)]
struct Cut {
    /// Byte offsets: the piece before ends at `end`, the next starts at
    /// `start`.
    end: usize,
    start: usize,
    /// Characters of the text before `end`, and before `start`.
    end_chars: usize,
    start_chars: usize,
    /// The lines `end` and `start` are on.
    end_line: usize,
    start_line: usize,
    /// What cutting here costs: what it separates.
    price: u64,
}

impl Cut {
    /// Before a heading costs nothing, between paragraphs next to nothing
    /// (so that of two cuts a few characters apart, a rule `---` and the
    /// heading under it, the one before the heading is kept); between lines
    /// (a list's items, a table's rows) little; after a sentence more;
    /// between two words of a sentence more again; inside a word (one
    /// longer than a chunk) much more. Weighed against the pieces' lengths
    /// (see [`piece_cost`]): 100, a cut after a sentence rather than between
    /// paragraphs, is what a piece of 800 characters costs for being 100
    /// short, or one of 1,000 for being 316 off.
    const HEADING: u64 = 0;
    const PARAGRAPH: u64 = 10;
    const LINE: u64 = 30;
    const SENTENCE: u64 = 100;
    const WORD: u64 = 300;
    const INSIDE: u64 = 5_000;
    /// Between a heading and what follows it: more than any piece costs
    /// for being short (7,500 at most), so that a heading is left at the
    /// end of a chunk, away from its text, only when nothing else can be
    /// done (a run of headings longer than a chunk).
    const STRANDED: u64 = 10_000;
}

/// Cuts are about this many characters apart at the closest: inside a word
/// longer than a chunk, every this many characters, and elsewhere the
/// cheapest of those in each stretch of this many. One a character would make the search for
/// the cuts four times slower on a text of one-letter words or lines (and
/// 25 times on a 200,000-character word), for pieces no better.
const STEP: usize = 8;

/// The cost of a piece of `chars` characters: each piece costs something,
/// so that fewer and fuller ones are preferred; one under [`MIN_CHARS`]
/// costs more the shorter it is (by the square: a crumb of 100 characters
/// reads out of context and ranks poorly); one over [`MAX_CHARS`] costs
/// more than any cut, so that it is only ever the last resort; and the
/// distance to the middle of the range evens the pieces out.
fn piece_cost(chars: usize) -> u64 {
    let mut cost = 100;
    if chars > MAX_CHARS {
        cost += 1_000_000 * (chars - MAX_CHARS) as u64;
    }
    if chars < MIN_CHARS {
        let short = (MIN_CHARS - chars) as u64;
        cost += short * short / 100;
    }
    let off = chars.abs_diff((MIN_CHARS + MAX_CHARS) / 2) as u64;
    cost + off * off / 1_000
}

/// The places `text` may be cut, in order, from one at its start to one at
/// its end.
fn cuts(text: &str, lines: &Lines) -> Vec<Cut> {
    let at = |byte, chars, line| Cut {
        end: byte,
        start: byte,
        end_chars: chars,
        start_chars: chars,
        end_line: line,
        start_line: line,
        price: 0,
    };
    let mut out = vec![at(0, 0, lines.first)];
    // The run of blank space being read: where it starts (bytes,
    // characters, line) and how many newlines it holds.
    let mut run: Option<(usize, usize, usize, usize)> = None;
    let mut before: Option<char> = None;
    let (mut chars, mut line) = (0, lines.first);
    for (byte, c) in text.char_indices() {
        if blank(c) {
            let (_, _, _, newlines) = run.get_or_insert((byte, chars, line, 0));
            if c == '\n' {
                *newlines += 1;
                line += 1;
            }
        } else {
            if let Some((end, end_chars, end_line, newlines)) = run.take() {
                let price = if newlines > 0 && lines.glued[line] {
                    None
                } else if newlines > 0 && lines.heading[line] {
                    // Between sections; after an empty one, a heading left
                    // on its own.
                    Some(if lines.heading[end_line] {
                        Cut::STRANDED
                    } else {
                        Cut::HEADING
                    })
                } else if !lines.long[lines.section[line]] {
                    // Inside a section that fits in a chunk: it stays whole.
                    None
                } else if newlines > 0 && lines.heading[end_line] {
                    Some(Cut::STRANDED)
                } else {
                    Some(match newlines {
                        0 if matches!(before, Some('.' | '!' | '?' | '…')) => Cut::SENTENCE,
                        0 => Cut::WORD,
                        1 => Cut::LINE,
                        _ => Cut::PARAGRAPH,
                    })
                };
                // None at the text's start: nothing is before it.
                if let Some(price) = price.filter(|_| end > 0) {
                    let cut = Cut {
                        end,
                        start: byte,
                        end_chars,
                        start_chars: chars,
                        end_line,
                        start_line: line,
                        price,
                    };
                    // Cuts in one stretch of STEP characters of the text
                    // are one choice, the cheapest of them (the first of
                    // equals): where they are dense ("a a a …", a word a
                    // line), the search for the cuts looks at a chunk's
                    // length over STEP of them, not one per character. A
                    // stretch left over a chunk long by those dropped
                    // (a long run of blank space) is cut below.
                    match out.last_mut() {
                        Some(last)
                            if last.end > 0 && last.end_chars / STEP == cut.end_chars / STEP =>
                        {
                            if cut.price < last.price {
                                *last = cut;
                            }
                        }
                        _ => out.push(cut),
                    }
                }
            }
            before = Some(c);
        }
        chars += 1;
    }
    // Blank space at the text's end is in no piece.
    let (end, end_chars, end_line) =
        run.map_or((text.len(), chars, line), |(b, c, l, _)| (b, c, l));
    out.push(at(end, end_chars, end_line));
    // Stretches longer than a chunk with no place to cut (a word longer
    // than a chunk, or text a rule keeps together): cut at their blank
    // space, between words, else inside their words, every STEP
    // characters. Never in blank space, which no piece starts or ends with.
    let mut all = Vec::with_capacity(out.len());
    for pair in out.windows(2) {
        let (from, to) = (pair[0], pair[1]);
        all.push(from);
        if to.end_chars - from.start_chars <= MAX_CHARS {
            continue;
        }
        let stretch = &text[from.start..to.end];
        let mut line = from.start_line;
        let mut run: Option<(usize, usize, usize)> = None;
        let mut word = 0;
        // Where the last cut of the stretch ends: one blank space a few
        // characters after it is no better a place (a table of one-letter
        // rows is all short lines).
        let mut last = 0;
        for (n, (byte, c)) in stretch.char_indices().enumerate() {
            if blank(c) {
                run.get_or_insert((byte, n, line));
                word = 0;
                line += usize::from(c == '\n');
                continue;
            }
            if let Some((end, end_n, end_line)) = run.take() {
                if end_n < last + STEP && n - end_n < STEP {
                    word += 1;
                    continue;
                }
                last = n;
                all.push(Cut {
                    end: from.start + end,
                    start: from.start + byte,
                    end_chars: from.start_chars + end_n,
                    start_chars: from.start_chars + n,
                    end_line,
                    start_line: line,
                    price: Cut::WORD,
                });
            } else if word > 0 && word % STEP == 0 {
                last = n;
                all.push(Cut {
                    price: Cut::INSIDE,
                    ..at(from.start + byte, from.start_chars + n, line)
                });
            }
            word += 1;
        }
    }
    all.extend(out.last().copied());
    all
}

/// Cuts `text` (the document's Markdown, with no blank space at either
/// end) into pieces: the cheapest of all the ways to cut it, by what each
/// cut separates and how far each piece's length is from 800 to 1,200
/// characters. A dynamic programme over the places a cut may go, each
/// piece ending at most [`MAX_CHARS`] characters after it starts: linear
/// in the text's length.
///
/// Chosen one after the other, pieces came out uneven: filled to the
/// limit, 2,500 characters made 1,200, 1,200 and a crumb of 100; cut
/// between paragraphs first and within a long one after, paragraphs of
/// 1,300 characters made pieces of 650 each, where cutting after a
/// sentence makes them of about 1,100; and the tail of a long section
/// stayed a crumb of its own rather than join the short section after it.
///
/// Answers each piece's byte range, and the header repeated over it (see
/// [`Lines::header`]).
fn split(text: &str, lines: &Lines) -> Vec<(usize, usize, Option<usize>)> {
    let cuts = cuts(text, lines);
    let header_chars: Vec<usize> = lines.headers.iter().map(|h| h.chars().count()).collect();
    // The longest header a piece can start with (`Lines::read` repeats
    // none over a quarter of a chunk).
    let widest = header_chars
        .iter()
        .copied()
        .filter(|&h| h <= MAX_CHARS / 4 + 1)
        .max()
        .unwrap_or(0);
    let mut best: Vec<(u64, usize)> = vec![(u64::MAX, 0); cuts.len()];
    best[0] = (0, 0);
    // The pieces ending at cut `j` start at the cuts `first..j` (those
    // no longer than a chunk), or at `j - 1` whatever its length (a
    // section that fits, and grows by its header): a way to the end
    // always exists. `cheapest` holds, of `first..j`, the cuts whose way
    // costs less than any later one's, in order: its front is the cheapest
    // way to any of them.
    let mut first = 0;
    let mut cheapest: VecDeque<usize> = VecDeque::new();
    for j in 1..cuts.len() {
        while cheapest.back().is_some_and(|&b| best[b].0 >= best[j - 1].0) {
            cheapest.pop_back();
        }
        cheapest.push_back(j - 1);
        while cuts[j].end_chars - cuts[first].start_chars > MAX_CHARS && first < j - 1 {
            first += 1;
        }
        while cheapest.front().is_some_and(|&f| f < first) {
            cheapest.pop_front();
        }
        let floor = best[cheapest[0]].0;
        // The longest pieces first; of equal costs the shortest piece wins
        // (`<=`), as it always has. From the piece whose length, with the
        // widest header, is still under the middle of the range, each
        // shorter one costs more, so once the cheapest way to its start
        // plus that cannot beat what was found, none after can: most of a
        // long section's candidates are never weighed.
        for i in first..j {
            let raw = cuts[j].end_chars - cuts[i].start_chars;
            if raw + widest <= (MIN_CHARS + MAX_CHARS) / 2
                && floor
                    .saturating_add(piece_cost(raw + widest))
                    .saturating_add(cuts[j].price)
                    > best[j].0
            {
                break;
            }
            let chars = raw + lines.header(&cuts[i]).map_or(0, |h| header_chars[h]);
            let cost = best[i]
                .0
                .saturating_add(piece_cost(chars))
                .saturating_add(cuts[j].price);
            if cost <= best[j].0 {
                best[j] = (cost, i);
            }
        }
    }
    let mut out = Vec::new();
    let mut j = cuts.len() - 1;
    while j > 0 {
        let i = best[j].1;
        out.push((cuts[i].start, cuts[j].end, lines.header(&cuts[i])));
        j = i;
    }
    out.reverse();
    out
}

/// Whether `line` is a row of a Markdown table.
fn table_row(line: &str) -> bool {
    line.trim_start().starts_with('|')
}

/// The header of the table whose body starts after `lines[i]`: its header
/// row and delimiter row (`| Jour | Heures |` over `|---|---|`), when
/// `lines[i]` is that delimiter row.
fn table_header(lines: &[&str], i: usize) -> Option<String> {
    let delimiter = lines[i].trim();
    let is_delimiter = delimiter.starts_with('|')
        && delimiter.contains('-')
        && delimiter
            .chars()
            .all(|c| matches!(c, '|' | '-' | ':' | ' '));
    let row = lines[..i].last()?;
    (is_delimiter && table_row(row)).then(|| format!("{row}\n{}", lines[i]))
}

/// `text` with each lone carriage return (a line break of old Macintosh
/// files, which some editors still write) made a newline, the line break
/// the chunker reads; `\r\n` stays. The same length in bytes: a byte
/// offset in one is the same place in the other.
fn lone_cr_as_newline(text: &str) -> Option<String> {
    let lone = |(i, b): (usize, &u8)| *b == b'\r' && text.as_bytes().get(i + 1) != Some(&b'\n');
    text.as_bytes().iter().enumerate().any(lone).then(|| {
        let bytes: Vec<u8> = text
            .as_bytes()
            .iter()
            .enumerate()
            .map(|(i, b)| if lone((i, b)) { b'\n' } else { *b })
            .collect();
        String::from_utf8(bytes).expect("one ASCII byte for another")
    })
}

/// The chunks of a document titled `title`. A lone carriage return is a
/// line break, a newline in the chunks' text.
pub fn chunks(markdown: &str, title: &str) -> Vec<Chunk> {
    let newlines = lone_cr_as_newline(markdown);
    let markdown = newlines.as_deref().unwrap_or(markdown);
    // Blank space around the text is in no chunk; lines keep their place.
    let start = markdown.len() - markdown.trim_start_matches(blank).len();
    let text = markdown[start..].trim_end_matches(blank);
    let skipped = markdown[..start].matches('\n').count();
    if text.is_empty() {
        return Vec::new();
    }
    let lines = Lines {
        first: skipped,
        ..Lines::read(markdown, title)
    };
    let line_starts: Vec<usize> = std::iter::once(0)
        .chain(text.match_indices('\n').map(|(at, _)| at + 1))
        .collect();
    let line_of = |byte: usize| skipped + line_starts.partition_point(|s| *s <= byte) - 1;
    split(text, &lines)
        .into_iter()
        .map(|(from, to, header)| {
            // The path above all of the piece's sections: their common
            // start, the title when they share none.
            let (first, last) = (lines.section[line_of(from)], lines.section[line_of(to - 1)]);
            let mut path: &[Rc<str>] = &lines.paths[first];
            for s in first + 1..=last {
                let common = path
                    .iter()
                    .zip(&lines.paths[s])
                    .take_while(|(a, b)| Rc::ptr_eq(a, b))
                    .count();
                path = &path[..common];
            }
            // An empty heading (`#` alone) has no name to show.
            let names: Vec<&str> = path
                .iter()
                .map(|n| &**n)
                .filter(|n| !n.is_empty())
                .collect();
            let body = &text[from..to];
            Chunk {
                heading: if names.is_empty() {
                    title.to_string()
                } else {
                    names.join(" > ")
                },
                text: match header {
                    Some(h) => format!("{}{body}", lines.headers[h]),
                    None => body.to_string(),
                },
            }
        })
        .collect()
}

#[cfg(test)]
pub(super) mod tests {
    use super::*;

    /// [`split`] as it was, weighing every candidate: the pruned one must
    /// cut every text exactly as it does.
    fn split_weighing_all(text: &str, lines: &Lines) -> Vec<(usize, usize, Option<usize>)> {
        let cuts = cuts(text, lines);
        let header_chars: Vec<usize> = lines.headers.iter().map(|h| h.chars().count()).collect();
        let mut best: Vec<(u64, usize)> = vec![(u64::MAX, 0); cuts.len()];
        best[0] = (0, 0);
        for j in 1..cuts.len() {
            for i in (0..j).rev() {
                let raw = cuts[j].end_chars - cuts[i].start_chars;
                // The cut just before is always possible, whatever the length
                // (a section that fits, and grows by its header): a way
                // to the end always exists.
                if raw > MAX_CHARS && i + 1 < j {
                    break;
                }
                let chars = raw + lines.header(&cuts[i]).map_or(0, |h| header_chars[h]);
                let cost = best[i]
                    .0
                    .saturating_add(piece_cost(chars))
                    .saturating_add(cuts[j].price);
                if cost < best[j].0 {
                    best[j] = (cost, i);
                }
            }
        }
        let mut out = Vec::new();
        let mut j = cuts.len() - 1;
        while j > 0 {
            let i = best[j].1;
            out.push((cuts[i].start, cuts[j].end, lines.header(&cuts[i])));
            j = i;
        }
        out.reverse();
        out
    }

    /// Whether every line of `text` is a heading: a chunk with no text.
    fn only_headings(text: &str) -> bool {
        text.lines()
            .filter(|l| !l.trim().is_empty())
            .all(|l| heading_of(l).is_some())
    }

    #[test]
    fn small_sections_join_under_the_heading_above_them_all() {
        let md = "# Salon\n\nBienvenue.\n\n## Horaires\n\n| Jour | Heures |\n|---|---|\n| Samedi | 9h-18h |\n\n## Contact\n\n01 23 45 67 89\n";
        let got = chunks(md, "Accueil");
        assert_eq!(got.len(), 1);
        assert_eq!(got[0].heading, "Salon");
        assert!(got[0].text.contains("## Horaires\n\n| Jour | Heures |"));
        assert!(got[0].text.ends_with("01 23 45 67 89"));
        // Two subsections alone: the heading above both.
        let got = chunks(
            "# Tarifs\n\n## Coupes\n\n25 €\n\n## Couleurs\n\n60 €\n",
            "T",
        );
        assert_eq!(
            got,
            [Chunk {
                heading: "Tarifs".into(),
                text: "# Tarifs\n\n## Coupes\n\n25 €\n\n## Couleurs\n\n60 €".into()
            }]
        );
    }

    #[test]
    fn sections_joined_across_top_level_headings_are_under_the_title() {
        let long = "Balayage et couleur. ".repeat(50); // 1,050 characters
        let hours = "Du lundi au samedi de 9 h à 19 h. ".repeat(6); // 204
        let md = format!(
            "# Tarifs\n\n## Couleurs\n\n{long}\n\n### Mèches\n\n80 €\n\n# Horaires\n\n{hours}\n"
        );
        let got = chunks(&md, "Salon");
        let headings: Vec<&str> = got.iter().map(|c| c.heading.as_str()).collect();
        // The top heading joins its first subsection, which fits whole;
        // "Mèches" and "Horaires", small, go together: no heading is above
        // both, so the chunk is the document's.
        assert_eq!(headings, ["Tarifs", "Salon"]);
        assert_eq!(
            got[0].text,
            format!("# Tarifs\n\n## Couleurs\n\n{}", long.trim_end())
        );
        assert_eq!(
            got[1].text,
            format!("### Mèches\n\n80 €\n\n# Horaires\n\n{}", hours.trim_end())
        );
        // All of it in one chunk when it fits: the document's.
        let md = format!(
            "# Tarifs\n\n## Couleurs\n\n{long}\n\n### Mèches\n\n80 €\n\n# Horaires\n\nLundi 9h.\n"
        );
        let got = chunks(&md, "Salon");
        assert_eq!(got.len(), 1, "{got:?}");
        assert_eq!(got[0].heading, "Salon");
        assert_eq!(got[0].text, md.trim_end());
        // Two subsections joined: the heading above both.
        let md = format!(
            "# Tarifs\n\n## Couleurs\n\n{long}\n\n### Mèches\n\n{hours}\n\n### Balayage\n\n90 €\n"
        );
        let got = chunks(&md, "Salon");
        assert_eq!(got.len(), 2, "{got:?}");
        assert_eq!(got[1].heading, "Tarifs > Couleurs");
        assert_eq!(
            got[1].text,
            // A chunk is the document's text as it is: the trailing blank
            // of the hours stays.
            format!("### Mèches\n\n{hours}\n\n### Balayage\n\n90 €")
        );
        // A FAQ of second-level headings only: one chunk, the title's.
        let faq: String = (1..=6)
            .map(|i| format!("## Question {i} ?\n\nRéponse {i}.\n\n"))
            .collect();
        let got = chunks(&faq, "FAQ");
        assert_eq!(got.len(), 1);
        assert_eq!(got[0].heading, "FAQ");
        assert!(got[0].text.ends_with("## Question 6 ?\n\nRéponse 6."));
    }

    #[test]
    fn long_sections_are_cut_between_paragraphs_under_the_limit() {
        let para = "Mot ".repeat(100); // 400 characters
        let md = format!("# A\n\n{para}\n\n{para}\n\n{para}\n\n## B\n\n{para}\n");
        let got = chunks(&md, "T");
        let lens: Vec<usize> = got.iter().map(|c| c.text.chars().count()).collect();
        assert!(lens.iter().all(|l| *l <= MAX_CHARS), "{lens:?}");
        assert_eq!(
            got.iter().map(|c| c.heading.as_str()).collect::<Vec<_>>(),
            ["A", "A"]
        );
        // The third paragraph goes with the section after it rather than
        // stay a chunk of 400 characters: it keeps its trailing space.
        assert_eq!(lens, [806, 807]);
    }

    #[test]
    fn a_long_table_is_cut_between_rows_each_piece_under_its_header() {
        let rows: String = (1..=120)
            .map(|i| format!("| Coupe n°{i} | {i} € |\n"))
            .collect();
        let md = format!("# Tarifs\n\n| Prestation | Prix |\n|---|---|\n{rows}");
        let got = chunks(&md, "Salon");
        assert_eq!(got.len(), 3, "{got:?}");
        assert!(got[0]
            .text
            .starts_with("# Tarifs\n\n| Prestation | Prix |\n|---|---|\n| Coupe n°1 | 1 € |\n"));
        for c in &got[1..] {
            assert!(
                c.text
                    .starts_with("| Prestation | Prix |\n|---|---|\n| Coupe n°"),
                "{c:?}"
            );
            assert_eq!(c.heading, "Tarifs");
        }
        assert!(got.iter().all(|c| c.text.chars().count() <= MAX_CHARS));
        // Every row once, in order.
        let body: Vec<&str> = got
            .iter()
            .flat_map(|c| c.text.lines())
            .filter(|l| l.starts_with("| Coupe"))
            .collect();
        assert_eq!(body, rows.lines().collect::<Vec<_>>());
        // Text that goes on after the table takes no header.
        let after = format!("{md}Fin de la liste des prix.\n{}", "Suite. ".repeat(170));
        let got = chunks(&after, "Salon");
        assert!(got
            .last()
            .unwrap()
            .text
            .ends_with(&"Suite. ".repeat(170).trim_end().to_string()));
        assert!(
            !got.last().unwrap().text.contains("| Prestation"),
            "{got:?}"
        );
        // A header wider than a quarter of a chunk is not repeated: it
        // would crowd out the rows.
        let wide = format!("| {} | Prix |\n|---|---|\n", "Prestation ".repeat(30));
        let got = chunks(&format!("# Tarifs\n\n{wide}{rows}"), "Salon");
        assert!(got[0].text.contains("| Prestation Prestation"));
        assert!(got.len() > 1, "{got:?}");
        assert!(
            got[1..].iter().all(|c| c.text.starts_with("| Coupe n°")),
            "{got:?}"
        );
    }

    #[test]
    fn a_cut_at_a_tables_delimiter_row_moves_its_header_row_along() {
        // Eleven lines of 99 characters make 1,099; the header row brings
        // the piece to 1,109, and the delimiter row would pass 1,115. With
        // the table's 109 rows the text is 2,209 characters, two even
        // shares of 1,105: the header row is closer to it taken than not.
        let line = "x".repeat(99);
        let lines = [line.as_str(); 11].join("\n");
        let rows = ["| 1 | 2 |"; 109].join("\n");
        let text = format!("{lines}\n| A | B |\n|---|---|\n{rows}");
        assert_eq!(text.chars().count(), 2209);
        let got: Vec<String> = chunks(&text, "T").into_iter().map(|c| c.text).collect();
        assert_eq!(got.len(), 2, "{got:?}");
        assert_eq!(got[0], lines);
        assert_eq!(got[1], format!("| A | B |\n|---|---|\n{rows}"));
    }

    #[test]
    fn a_long_section_is_cut_into_even_pieces_not_full_ones_and_a_crumb() {
        // 25 paragraphs of 100 characters: 2,548 with the blank lines.
        // Filled to the limit one after the other, they made chunks of
        // 1,129, 1,120 and 304; three even shares of about 850 each.
        let para = format!("{}fin.", "Mot ".repeat(24));
        let body = [para.as_str(); 25].join("\n\n");
        let got = chunks(&format!("# Soins\n\n{body}\n"), "Salon");
        let lens: Vec<usize> = got.iter().map(|c| c.text.chars().count()).collect();
        assert_eq!(lens, [823, 916, 814]);
        assert!(got.iter().all(|c| c.heading == "Soins"), "{got:?}");
        assert!(got[0].text.starts_with("# Soins\n\nMot "));
        // Every paragraph once, in order.
        let paragraphs: usize = got.iter().map(|c| c.text.matches("fin.").count()).sum();
        assert_eq!(paragraphs, 25);
        // The table above: 2,695 characters in three pieces, each under
        // its header, none of them a crumb of one row.
        let rows: String = (1..=120)
            .map(|i| format!("| Coupe n°{i} | {i} € |\n"))
            .collect();
        let table = format!("| Prestation | Prix |\n|---|---|\n{rows}");
        let got: Vec<String> = chunks(&table, "T").into_iter().map(|c| c.text).collect();
        let lens: Vec<usize> = got.iter().map(|p| p.chars().count()).collect();
        assert_eq!(lens, [937, 911, 909]);
    }

    #[test]
    fn paragraphs_longer_than_a_chunk_are_cut_after_sentences_into_full_chunks() {
        // Ten paragraphs of 26 sentences of 50 characters: 1,300 each.
        // Each cut on its own made two pieces of 650; cut as one text,
        // they make twelve chunks of 1,050 to 1,100, each ending on a
        // sentence (one between paragraphs: cutting between paragraphs
        // more often would take fifteen chunks of about 870).
        let sentence = "Le salon offre des soins du visage fait main ici. ";
        assert_eq!(sentence.chars().count(), 50);
        let para = sentence.repeat(26);
        let body = [para.trim_end(); 10].join("\n\n");
        let got = chunks(&body, "Soins");
        let lens: Vec<usize> = got.iter().map(|c| c.text.chars().count()).collect();
        assert_eq!(
            lens,
            [1099, 1100, 1100, 1050, 1050, 1099, 1099, 1100, 1100, 1050, 1050, 1099]
        );
        assert!(got.iter().all(|c| c.text.ends_with("main ici.")), "{got:?}");
        assert!(
            got.iter().all(|c| c.text.starts_with("Le salon")),
            "{got:?}"
        );
        // Nothing lost, nothing twice: the chunks and the blank space
        // between them are the text.
        let mut at = 0;
        let mut between_paragraphs = 0;
        for c in &got {
            at += body[at..].find(&c.text).expect("in order");
            assert_eq!(at == 0, std::ptr::eq(c, &got[0]), "no text before");
            at += c.text.len();
            between_paragraphs += usize::from(body[at..].starts_with("\n\n"));
        }
        assert_eq!(at, body.len());
        assert_eq!(between_paragraphs, 1);
        let sentences: usize = got.iter().map(|c| c.text.matches("ici.").count()).sum();
        assert_eq!(sentences, 260);
        // With no sentence to end, between words; never at a no-break
        // space, which French puts before "€".
        let prices = "Coupe et brushing\u{a0}: 45\u{a0}€ ".repeat(100);
        let got = chunks(&prices, "Tarifs");
        assert!(got.len() > 1, "{got:?}");
        assert!(
            got.iter()
                .all(|c| c.text.starts_with("Coupe et brushing\u{a0}: 45\u{a0}€")),
            "{got:?}"
        );
    }

    /// A document of 2 to 13 sections of one to five blocks each:
    /// paragraphs of 1 to 12 sentences of 5 to 24 words, lists, price
    /// tables of 2 to 31 rows; drawn with a fixed seed.
    pub(in crate::kb) fn generated(draw: &mut u64) -> String {
        let mut below = |n: usize| {
            *draw ^= *draw << 13;
            *draw ^= *draw >> 7;
            *draw ^= *draw << 17;
            (*draw % n as u64) as usize
        };
        const WORDS: &[&str] = &[
            "salon",
            "coiffure",
            "rendez-vous",
            "samedi",
            "tarif",
            "coupe",
            "couleur",
            "brushing",
            "soin",
            "visage",
            "nous",
            "vous",
            "accueillons",
            "du",
            "lundi",
            "au",
            "avec",
            "sans",
            "équipe",
            "produits",
            "naturels",
            "la",
            "le",
            "les",
            "de",
            "des",
            "et",
            "pour",
        ];
        let sentence = |below: &mut dyn FnMut(usize) -> usize| {
            let words: Vec<&str> = (0..5 + below(20))
                .map(|_| WORDS[below(WORDS.len())])
                .collect();
            format!("{}.", words.join(" "))
        };
        let mut out = String::new();
        for s in 0..2 + below(12) {
            out.push_str(&format!("{} Section {s}\n\n", "#".repeat(2 + below(2))));
            for _ in 0..1 + below(5) {
                match below(6) {
                    0 => {
                        out.push_str("| Prestation | Prix |\n|---|---|\n");
                        for r in 0..2 + below(30) {
                            let (word, price) = (WORDS[below(WORDS.len())], below(200));
                            out.push_str(&format!("| {word} {r} | {price} € |\n"));
                        }
                    }
                    1 => {
                        for _ in 0..2 + below(8) {
                            out.push_str(&format!("- {}\n", sentence(&mut below)));
                        }
                    }
                    _ => {
                        let n = 1 + below(12);
                        let para: Vec<String> = (0..n).map(|_| sentence(&mut below)).collect();
                        out.push_str(&para.join(" "));
                        out.push('\n');
                    }
                }
                out.push('\n');
            }
        }
        out
    }

    #[test]
    fn generated_documents_come_out_in_chunks_of_800_to_1200() {
        // 200 documents, 2.6 million characters. The pieces chosen one
        // after the other made 3,142 chunks, 1,263 of them under 800
        // characters (110 under 400), the median 861.
        let mut draw = 0x9e37_79b9_7f4a_7c15;
        let docs: Vec<String> = (0..200).map(|_| generated(&mut draw)).collect();
        let chars: usize = docs.iter().map(|d| d.chars().count()).sum();
        assert_eq!(chars, 2_639_404);
        let got: Vec<Chunk> = docs.iter().flat_map(|d| chunks(d, "Salon")).collect();
        let mut lens: Vec<usize> = got.iter().map(|c| c.text.chars().count()).collect();
        lens.sort_unstable();
        let under = |n: usize| lens.iter().filter(|l| **l < n).count();
        assert_eq!(
            (got.len(), under(800), under(400), lens[lens.len() / 2]),
            (2_572, 92, 5, 1_045)
        );
        assert!(lens.iter().all(|l| *l <= MAX_CHARS), "{:?}", lens.last());
        // Sections joined across headings of one level are under the
        // heading above them; across the top ones, under the title.
        let titled = got.iter().filter(|c| c.heading == "Salon").count();
        assert_eq!(titled, 382);
    }

    #[test]
    fn the_pruned_search_cuts_every_text_as_weighing_all_did() {
        // Texts of every shape the property test below draws, and the
        // generated business documents, longer and shorter: the cheapest
        // way found by skipping the candidates that cannot win is the very
        // one weighing them all found, ties included.
        let long_word = "x".repeat(300);
        let pieces = [
            "a",
            "b",
            ".",
            " ",
            "  ",
            "\n",
            "\n\n",
            "# ",
            "## ",
            "|",
            "|-|",
            "é",
            "!",
            "| a | b |\n|---|---|\n",
            "```\n",
            "===",
            "- ",
            "> ",
            "mot ",
            "Une phrase. ",
            &long_word,
        ];
        let mut draw: u64 = 0x9e37_79b9_7f4a_7c15;
        let mut next = || {
            draw ^= draw << 13;
            draw ^= draw >> 7;
            draw ^= draw << 17;
            draw
        };
        let mut texts: Vec<String> = (0..400)
            .map(|_| {
                let len = (next() % 3_000) as usize;
                (0..len)
                    .map(|_| pieces[(next() % pieces.len() as u64) as usize])
                    .collect()
            })
            .collect();
        let mut seed = 7;
        texts.extend((0..40).map(|_| generated(&mut seed)));
        let mut cut = 0;
        for (n, text) in texts.iter().enumerate() {
            let text = text.trim_matches(blank);
            if text.is_empty() {
                continue;
            }
            let lines = Lines::read(text, "T");
            let got = split(text, &lines);
            cut += got.len();
            assert_eq!(got, split_weighing_all(text, &lines), "text {n}: {text:?}");
        }
        assert!(cut > 4_000, "{cut} pieces");
    }

    #[test]
    fn any_text_comes_out_whole_in_order_and_under_the_limit() {
        // Texts drawn from pieces that steer the cuts (headings, tables,
        // CRLF and lone CR, fences, tabs, no-break spaces, sentence ends, words and
        // runs of blank space longer than a chunk's quarter): every
        // character that is not blank space is in one chunk, in order, each
        // chunk a slice of the text but for a table header or an opening
        // fence repeated over it, none over the limit but by that header,
        // none starting or ending with blank space.
        let long_word = "x".repeat(300);
        let long_blank = " ".repeat(300);
        let pieces = [
            "a",
            "b",
            ".",
            " ",
            "  ",
            "\t",
            "\r",
            "\r\n",
            "\n",
            "\n\n",
            "# ",
            "## ",
            "|",
            "|-|",
            "-",
            ":",
            "\u{a0}",
            "é",
            "!",
            "| a | b |\n|---|---|\n",
            "#",
            "```\n",
            "~~~",
            "===",
            "- ",
            "> ",
            &long_word,
            &long_blank,
        ];
        let mut draw: u64 = 0x2545_f491_4f6c_dd1d;
        let mut next = || {
            draw ^= draw << 13;
            draw ^= draw >> 7;
            draw ^= draw << 17;
            draw
        };
        for round in 0..300 {
            let len = (next() % 1_500) as usize;
            let text: String = (0..len)
                .map(|_| pieces[(next() % pieces.len() as u64) as usize])
                .collect();
            let got = chunks(&text, "T");
            // A lone carriage return comes out a newline.
            let text = lone_cr_as_newline(&text).unwrap_or(text);
            let mut at = 0;
            for c in &got {
                // The chunk as it is, or after a repeated header: a line
                // (a code block's opening fence), or two (a table's header
                // row and delimiter row), each a line of the text before.
                let (body, header) = (0..=2)
                    .find_map(|lines| {
                        let mut rows = c.text.splitn(lines + 1, '\n');
                        let header: Vec<&str> = rows.by_ref().take(lines).collect();
                        let body = if lines == 0 { &c.text } else { rows.next()? };
                        // A fence in a list item gives the piece's first
                        // line the item's indentation back.
                        let indent = match lines {
                            1 => body.len() - body.trim_start_matches(' ').len(),
                            _ => 0,
                        };
                        let body = &body[indent..];
                        let found = text[at..].find(body)?;
                        let before = &text[..at + found];
                        (text[at..at + found].chars().all(blank)
                            && header.iter().all(|h| before.split('\n').any(|l| l == *h)))
                        .then(|| {
                            let chars = header.iter().map(|h| h.chars().count() + 1);
                            (body, chars.sum::<usize>() + indent)
                        })
                    })
                    .unwrap_or_else(|| panic!("round {round}: a slice of the text: {c:?}"));
                let found = at + text[at..].find(body).unwrap();
                assert!(!body.is_empty() && !body.starts_with(blank) && !body.ends_with(blank));
                assert!(body.chars().count() <= MAX_CHARS, "round {round}: {c:?}");
                assert!(header <= MAX_CHARS / 4 + 1, "round {round}: {c:?}");
                at = found + body.len();
            }
            assert!(text[at..].chars().all(blank), "round {round}");
        }
    }

    #[test]
    fn cuts_closer_than_a_step_are_one_the_cheapest() {
        // One-letter words: a cut every 2 characters, kept one every 8.
        let text = "a ".repeat(1_000);
        let text = text.trim_end();
        let got = cuts(text, &Lines::read(text, "T"));
        let places: Vec<usize> = got.iter().map(|c| c.end_chars).collect();
        assert_eq!(places.len(), 2 + 250);
        assert_eq!(places[..4], [0, 1, 9, 17]);
        assert_eq!(places[places.len() - 1], 1_999);
        // Of those close together, the cheapest: after the sentence, not
        // between the words around it.
        // "… a bc. d e": the cuts at 1,601, 1,605 and 1,607 are one choice,
        // as are 1,593 to 1,599.
        let text = format!("{} bc. d e", "a ".repeat(801).trim_end());
        let got = cuts(&text, &Lines::read(&text, "T"));
        let near: Vec<(usize, u64)> = got
            .iter()
            .filter(|c| (1_590..1_609).contains(&c.end_chars))
            .map(|c| (c.end_chars, c.price))
            .collect();
        assert_eq!(near, [(1_593, Cut::WORD), (1_605, Cut::SENTENCE)]);
    }

    #[test]
    fn blank_lines_and_spaces_inside_a_section_count_toward_its_length() {
        // 607 characters of text, then twenty lines of fifty spaces, then
        // more text: 1,641 characters, a section too long for a chunk
        // although its words alone would fit.
        let spaces = format!("{}\n", " ".repeat(50)).repeat(20);
        let md = format!(
            "# A\n\n{}\n{spaces}{}\n",
            "x ".repeat(300).trim_end(),
            "y".repeat(10)
        );
        let texts: Vec<String> = chunks(&md, "T").into_iter().map(|c| c.text).collect();
        let lens: Vec<usize> = texts.iter().map(|t| t.chars().count()).collect();
        // Cut after a word rather than leave the ten "y" a crumb: the
        // blank lines stay inside the second chunk, as text between text.
        assert_eq!(lens, [592, 1_042]);
        assert!(texts[1].starts_with("x x") && texts[1].ends_with(" \nyyyyyyyyyy"));
        // A section whose text fits, blank lines around it, stays whole.
        let md = format!("\n\n  \n# A\n\n{}\n\n\n  \n", "x ".repeat(590).trim_end());
        let got = chunks(&md, "T");
        assert_eq!(got.len(), 1);
        assert_eq!(got[0].text, md.trim());
    }

    #[test]
    fn a_heading_is_never_left_away_from_its_text_or_behind_a_rule() {
        // A section that fits stays whole, its heading with it, even when
        // the text before it is a crumb.
        let s = "Le salon offre des soins du visage fait main ici. ";
        let soins = format!("{}Fin des soins.", s.repeat(23));
        let md = format!(
            "Bienvenue au salon de coiffure Belle.\n\n# Soins\n\n{soins}\n\n# Contact\n\nTél. 01 23 45 67 89\n"
        );
        let got = chunks(&md, "Salon");
        assert!(got.iter().all(|c| !c.text.ends_with("# Soins")), "{got:?}");
        let with_soins: Vec<&Chunk> = got
            .iter()
            .filter(|c| c.text.contains("Fin des soins."))
            .collect();
        assert_eq!(with_soins.len(), 1);
        assert!(
            with_soins[0].text.starts_with("# Soins\n\nLe salon"),
            "{got:?}"
        );
        // A rule just before a heading: the cut goes before the heading,
        // whatever the characters between them.
        let long = "Une phrase de texte courant. ".repeat(52);
        let tail = "Une phrase de texte courant. ".repeat(31);
        for pad in 0..9 {
            let md = format!(
                "# A\n\n## G\n\n{long}{}\n\n---\n\n## H\n\n{tail}\n",
                "x".repeat(pad)
            );
            let got = chunks(&md, "T");
            let last = got.last().unwrap();
            assert_eq!(last.heading, "A > H", "pad {pad}: {got:?}");
            assert!(last.text.starts_with("## H\n\n"), "pad {pad}: {got:?}");
        }
        // A heading right under a table's delimiter row starts its section.
        let md = format!("# A\n\n{long}\n\n| Prestation | Prix |\n|---|---|\n# H\n\n{tail}\n");
        let got = chunks(&md, "T");
        assert_eq!(got.last().unwrap().heading, "H", "{got:?}");
        assert!(got.last().unwrap().text.starts_with("# H\n\n"), "{got:?}");
    }

    #[test]
    fn blank_space_is_cut_through_never_kept_at_a_chunks_ends() {
        // 2,500 spaces between two letters: two chunks, the letters.
        let md = format!("a\n{}\nb", " ".repeat(2_500));
        let texts: Vec<String> = chunks(&md, "T").into_iter().map(|c| c.text).collect();
        assert_eq!(texts, ["a", "b"]);
        let md = format!("a\nb{}c", " ".repeat(1_300));
        let texts: Vec<String> = chunks(&md, "T").into_iter().map(|c| c.text).collect();
        assert_eq!(texts, ["a\nb", "c"]);
        // Whitespace after a table's delimiter row, where no piece may
        // start: cut through all the same.
        let md = format!("| A |\n|---|\n{}| 1 |", " ".repeat(2_500));
        let got = chunks(&md, "T");
        assert!(
            got.iter()
                .all(|c| !c.text.starts_with(blank) && !c.text.ends_with(blank)),
            "{got:?}"
        );
        assert_eq!(
            got.iter()
                .map(|c| c.text.matches("| 1 |").count())
                .sum::<usize>(),
            1
        );
    }

    #[test]
    fn heading_paths_are_of_the_headings_themselves_not_their_names() {
        // Two sections named alike under different headings share none.
        let got = chunks("# A\n\nun\n\n# A\n\ndeux\n", "T");
        assert_eq!(got.len(), 1);
        assert_eq!(got[0].heading, "T");
        // An empty heading has no name to show.
        let got = chunks("# A\n## \ntexte\n", "T");
        assert_eq!(got[0].heading, "A");
        // A heading of 100,000 characters over 20,000 subsections: its
        // name shown cut to 200 characters, every chunk under it.
        let md = format!("# {}\n{}", "t".repeat(100_000), "## x\n".repeat(20_000));
        let got = chunks(&md, "T");
        let name = format!("{}…", "t".repeat(200));
        assert!(got.len() > 150, "{}", got.len());
        assert!(
            got.iter()
                .all(|c| c.heading == name || c.heading == format!("{name} > x")),
            "{:?}",
            got.iter().map(|c| c.heading.chars().count()).max()
        );
    }

    #[test]
    fn headings_are_read_as_commonmark_reads_them() {
        let got: Vec<Option<(usize, &str)>> = [
            "# Langage C#",
            "## Tarifs ##",
            "### Tarifs ###   ",
            "#\tHoraires",
            "#",
            "## ##",
            "#Tarifs",
            "####### Sept",
            "# Prix\r",
            "   # Trois espaces",
            "    # Quatre espaces",
        ]
        .into_iter()
        .map(heading_of)
        .collect();
        assert_eq!(
            got,
            [
                Some((1, "Langage C#")),
                Some((2, "Tarifs")),
                Some((3, "Tarifs")),
                Some((1, "Horaires")),
                Some((1, "")),
                Some((2, "")),
                None,
                None,
                Some((1, "Prix")),
                Some((1, "Trois espaces")),
                None,
            ]
        );
    }

    #[test]
    fn setext_headings_are_read_as_commonmark_reads_them() {
        let read = |text: &str| {
            let lines: Vec<&str> = text.split('\n').collect();
            let m = marks(&lines);
            let starts: Vec<Option<(usize, String)>> = m
                .starts
                .into_iter()
                .map(|s| s.map(|(l, n)| (l, n.into_owned())))
                .collect();
            (starts, m.heading)
        };
        let h = |level: usize, name: &str| Some((level, name.to_string()));
        assert_eq!(
            read("Tarifs\n======\n\nCoupe"),
            (
                vec![h(1, "Tarifs"), None, None, None],
                vec![true, true, false, false]
            )
        );
        // Lines of text over the underline make one name.
        assert_eq!(
            read(" Nos \nprix\n  --- "),
            (vec![h(2, "Nos prix"), None, None], vec![true; 3])
        );
        // After a rule, a heading or a fence, a paragraph starts afresh.
        assert_eq!(read("***\nTitre\n=").0, [None, h(1, "Titre"), None]);
        assert_eq!(read("# A\nB\n-").0, [h(1, "A"), h(2, "B"), None]);
        // Rules, not underlines: after a blank line, under a list item (or
        // its lazy lines), a quote, a table row, a fence; four spaces
        // before it make it text.
        for text in [
            "\n---\ntexte",
            "- article\n---",
            "- article\nsuite\n===",
            "2024. Année\n===",
            "> citation\n===",
            "| a | b |\n---",
            "```\nx\n```\n===",
            "texte\n    ---",
            "texte\n- - -",
            // Indented code, and front matter.
            "Lancez :\n\n    # sauvegarde\n    cp a b\n===",
            "---\ntitle: Tarifs\ndate: 2026-12-04\n---\n\nTexte.",
        ] {
            let (starts, heading) = read(text);
            assert!(starts.iter().all(Option::is_none), "{text:?}");
            assert!(heading.iter().all(|h| !h), "{text:?}");
        }
        // In a document: sections as under ATX headings.
        let body = "Le salon vous accueille du mardi au samedi. ".repeat(16);
        let text = format!("Salon Léa\n=========\n\n{body}\n\nTarifs\n------\n\n{body}");
        let got = chunks(&text, "T");
        let headings: Vec<&str> = got.iter().map(|c| c.heading.as_str()).collect();
        assert_eq!(headings, ["Salon Léa", "Salon Léa > Tarifs"], "{got:?}");
        assert!(got[1].text.starts_with("Tarifs\n------\n\nLe salon"));
    }

    #[test]
    fn fenced_code_is_read_as_commonmark_reads_it() {
        let code = |text: &str| {
            code_lines(&text.split('\n').collect::<Vec<_>>())
                .iter()
                .map(Option::is_some)
                .collect::<Vec<_>>()
        };
        // Opened by three backticks or tildes, an info string after them,
        // closed by a fence of the same character at least as long with
        // nothing after it.
        assert_eq!(
            code("a\n```bash\n# b\n```\nc"),
            [false, true, true, true, false]
        );
        assert_eq!(
            code("~~~~\n# b\n~~~\n```\n~~~~~ \nc"),
            [true, true, true, true, true, false]
        );
        // A fence with an info string closes nothing; one left open runs to
        // the end.
        assert_eq!(code("```\n# b\n``` x\n# c"), [true; 4]);
        // In a list item: opened after its marker or indented under it,
        // closed by a fence indented as the item's text, or by the item's
        // end (a line of text left of it).
        assert_eq!(
            code("- ```bash\n  # b\n  ```\n# c"),
            [true, true, true, false]
        );
        assert_eq!(
            code("1. Tapez :\n   ```\n   sudo reboot\n\n2. Attendez.\n# c"),
            [false, true, true, true, false, false]
        );
        // In a quote, ended by a line out of it.
        assert_eq!(code("> ```\n> # b\n> ```\n# c"), [true, true, true, false]);
        assert_eq!(code("> ```\n> # b\ntexte\n# c"), [true, true, false, false]);
        // Out of any item, text left of an indented fence is in it.
        assert_eq!(code("  ```\n# b\n  ```\n# c"), [true, true, true, false]);
        // Not fences: two backticks, four spaces before, a backtick in a
        // backtick fence's info string.
        assert_eq!(
            code("``\n# a\n    ```\n# b\n``` `x`\n   ```\nc\n```"),
            [false, false, false, false, false, true, true, true]
        );
    }

    #[test]
    fn a_comment_in_fenced_code_is_no_heading_and_a_pipe_no_table() {
        // A shell script pasted in a document: its `#` lines are no
        // headings, its `|` lines no table whose header is repeated.
        let script = "# sauvegarde du soir\nls -l\n| grep .csv\n|---|\n| tail -n 5\n";
        let text = format!(
            "# Installation\n\n{}\n\n```bash\n{}```\n\n## Suite\n\n{}",
            "Copiez le script suivant dans le terminal. ".repeat(20),
            script.repeat(20),
            "Redémarrez la caisse ensuite. ".repeat(30)
        );
        let got = chunks(&text, "Guide");
        let headings: Vec<&str> = got.iter().map(|c| c.heading.as_str()).collect();
        assert_eq!(
            headings,
            ["Installation", "Installation", "Installation > Suite"],
            "{got:?}"
        );
        // No table header was repeated: the second piece goes on under the
        // block's opening fence alone.
        let one = script.len();
        let script = script.repeat(20);
        let rest = &script[2 * one + "# sauvegarde du soir\nls -l\n".len()..];
        assert!(got[0]
            .text
            .ends_with("| tail -n 5\n# sauvegarde du soir\nls -l"));
        assert_eq!(got[1].text, format!("```bash\n{rest}```"));
        assert!(got.iter().all(|c| c.text.chars().count() <= MAX_CHARS));
        // A fence in a list item, indented under its marker, closes there:
        // the headings after it are headings.
        let body = "Le salon vous accueille du mardi au samedi. ".repeat(16);
        let text = format!(
            "# Installation\n\n- ```bash\n  # sauvegarde\n  ls\n  ```\n\n{body}\n\n\
             # Tarifs\n\n{body}\n\n# Contact\n\n{body}"
        );
        let got = chunks(&text, "Guide");
        let headings: Vec<&str> = got.iter().map(|c| c.heading.as_str()).collect();
        assert_eq!(headings, ["Installation", "Tarifs", "Contact"], "{got:?}");
    }

    #[test]
    fn a_long_code_block_goes_on_under_its_opening_fence() {
        let line = |n: usize| format!("# étape {n}\ncp caisse-{n}.db /mnt/sauvegarde/\n");
        let script: String = (1..=60).map(line).collect();
        let text = format!("# Sauvegarde\n\n~~~~ sh\n{script}~~~~\n\nFin du guide.");
        let got = chunks(&text, "Guide");
        assert_eq!(got.len(), 3, "{got:?}");
        // Each piece after the first starts with the fence and goes on
        // with the next line; none starts on the closing fence, which
        // stays with the code above it.
        assert!(got[0]
            .text
            .starts_with("# Sauvegarde\n\n~~~~ sh\n# étape 1\n"));
        let starts: Vec<&str> = got[1..]
            .iter()
            .map(|c| c.text.split('\n').nth(1).unwrap())
            .collect();
        assert_eq!(
            starts,
            [
                "cp caisse-21.db /mnt/sauvegarde/",
                "cp caisse-41.db /mnt/sauvegarde/"
            ]
        );
        assert!(got[1]
            .text
            .starts_with("~~~~ sh\ncp caisse-21.db /mnt/sauvegarde/\n# étape 22\n"));
        assert!(got[2]
            .text
            .ends_with("cp caisse-60.db /mnt/sauvegarde/\n~~~~\n\nFin du guide."));
        // Under the fence, a piece reads as the document does: its `#`
        // lines are code, not headings.
        for c in &got {
            let lines: Vec<&str> = c.text.split('\n').collect();
            let m = marks(&lines);
            assert!(m.heading.iter().filter(|h| **h).count() <= 1, "{c:?}");
            assert!(c.text.chars().count() <= MAX_CHARS);
        }
        // All of the text, in order, the repeated fences aside.
        let joined: String = got
            .iter()
            .enumerate()
            .map(|(i, c)| match i {
                0 => c.text.clone(),
                _ => c.text.strip_prefix("~~~~ sh").unwrap().to_string(),
            })
            .collect();
        assert_eq!(joined, text);

        // In a quote or a list item, the fence is repeated with its
        // marker: the piece's lines are in the same block, up to its
        // closing fence.
        for (open, indent) in [("> ```", "> "), ("- ```", "  ")] {
            let script: String = (1..=150)
                .map(|n| format!("{indent}# étape {n}\n{indent}cp caisse-{n}.db /mnt/\n"))
                .collect();
            let text = format!("{open}\n{script}{indent}```\n\n# Fin\n\nFin du guide.");
            let got = chunks(&text, "Guide");
            assert!(got.len() >= 4, "{got:?}");
            for c in &got[1..] {
                assert!(c.text.starts_with(&format!("{open}\n{indent}")), "{c:?}");
                let lines: Vec<&str> = c.text.split('\n').collect();
                let end = lines
                    .iter()
                    .position(|l| *l == format!("{indent}```"))
                    .unwrap_or(lines.len() - 1);
                let m = marks(&lines);
                assert!(m.code[..=end].iter().all(Option::is_some), "{c:?}");
                assert!(m.heading[..=end].iter().all(|h| !h), "{c:?}");
            }
        }

        // A fence indented under a list item's first line, its block ended
        // by the item: alone over a piece it would open a block running to
        // the piece's end, so it is not repeated. Closed by its own fence,
        // it is.
        let script: String = (1..=150)
            .map(|n| format!("   cp caisse-{n}.db /mnt/\n"))
            .collect();
        for (close, repeated) in [("", false), ("   ```\n", true)] {
            let text = format!("1. Tapez :\n   ```\n{script}{close}2. Attendez.\n\n# Fin\n\nFin.");
            let got = chunks(&text, "Guide");
            assert!(got.len() >= 3, "{got:?}");
            for c in &got[1..] {
                assert_eq!(c.text.starts_with("   ```\n"), repeated, "{c:?}");
            }
        }

        // No piece ends on a bare opening fence, its first line in the next
        // piece under the same fence: here a line no cut goes in follows
        // the fence, and a first piece holding the fence would be longer,
        // so cheaper, than one without it.
        let words = format!("{}Tapez :", "Copiez le script. ".repeat(38));
        let long = "x".repeat(1_100);
        let text = format!("{words}\n```bash\n{long}\n{script}```");
        let got = chunks(&text, "Guide");
        assert_eq!(got[0].text, words);
        assert_eq!(got[1].text, format!("```bash\n{long}"));

        // A block that fills a chunk but for its closing fence, of two
        // lines no cut goes in: the cut is between them, not before the
        // closing fence, which stays with the code above it.
        let (a, b) = ("a".repeat(590), "b".repeat(603));
        let suite = "Suite du guide. ".repeat(60);
        let text = format!("```\n{a}\n{b}\n```\n\n{}", suite.trim_end());
        let got = chunks(&text, "Guide");
        let texts: Vec<&str> = got.iter().map(|c| c.text.as_str()).collect();
        let phrases = |n: usize| "Suite du guide. ".repeat(n).trim_end().to_string();
        assert_eq!(
            texts,
            [
                format!("```\n{a}"),
                format!("```\n{b}\n```\n\n{}", phrases(11)),
                phrases(49)
            ]
        );

        // A fence wider than a quarter of a chunk is not repeated.
        let wide = format!("```{}", "x".repeat(MAX_CHARS / 4));
        let text = format!("{wide}\n{script}```");
        let got = chunks(&text, "Guide");
        assert!(got.len() >= 2, "{got:?}");
        assert!(got.iter().all(|c| text.contains(&c.text)), "{got:?}");

        // A line longer than a chunk, cut inside: the piece that goes on
        // in it still starts with the fence.
        let long = "mot ".repeat(400);
        let text = format!("```\n{}\n```", long.trim_end());
        let got = chunks(&text, "Guide");
        assert_eq!(got.len(), 2, "{got:?}");
        assert!(got[0].text.starts_with("```\nmot mot"));
        assert!(got[1].text.starts_with("```\nmot mot"));
        assert!(got[1].text.ends_with("mot\n```"));
    }

    #[test]
    fn a_lone_carriage_return_is_a_line_break() {
        let section = |name: &str| format!("## {name}\r\r{}\r", "Une phrase du guide. ".repeat(50));
        let text = format!("# Guide\r{}{}", section("Un"), section("Deux"));
        let got = chunks(&text, "T");
        let headings: Vec<&str> = got.iter().map(|c| c.heading.as_str()).collect();
        assert_eq!(headings, ["Guide", "Guide > Deux"], "{got:?}");
        assert!(got[0].text.starts_with("# Guide\n## Un\n\nUne phrase"));
        assert!(got.iter().all(|c| !c.text.contains('\r')));
        // CRLF stays as it is; the offsets of the text are kept.
        assert_eq!(lone_cr_as_newline("a\r\nb"), None);
        assert_eq!(
            lone_cr_as_newline("a\r\r\nb\r").as_deref(),
            Some("a\n\r\nb\n")
        );
    }

    #[test]
    fn text_before_any_heading_takes_the_title() {
        let got = chunks("Juste du texte.", "Mentions");
        assert_eq!(
            got,
            [Chunk {
                heading: "Mentions".into(),
                text: "Juste du texte.".into()
            }]
        );
    }

    #[test]
    fn a_heading_stays_with_the_text_under_it() {
        // A long first paragraph: the heading goes with its first piece,
        // not alone in a chunk of one line.
        let long = "Coloration végétale sur rendez-vous. ".repeat(37); // 1,369
        let md = format!("# Colorations\n\n{long}\n\n## Mèches\n\nBalayage et mèches.\n");
        let got = chunks(&md, "Salon");
        assert!(got[0]
            .text
            .starts_with("# Colorations\n\nColoration végétale"));
        assert!(got.iter().all(|c| !only_headings(&c.text)), "{got:?}");
        assert!(got.iter().all(|c| c.text.chars().count() <= MAX_CHARS));
        // Sections of 2,000 characters each: no chunk is a heading alone.
        let guide: String = (1..=4)
            .map(|i| format!("## Section {i}\n\n{}\n\n", "Texte du guide. ".repeat(125)))
            .collect();
        let got = chunks(&guide, "Guide");
        assert!(got.iter().all(|c| !only_headings(&c.text)), "{got:?}");
        assert_eq!(
            got.iter()
                .filter(|c| c.text.starts_with("## Section 3\n\nTexte"))
                .count(),
            1
        );
        // A heading with a long subsection right under it joins it, over
        // the limit by its own line at most.
        let md = format!("# Tarifs\n\n## Couleurs\n\n{long}\n");
        let got = chunks(&md, "Salon");
        assert!(
            got[0]
                .text
                .starts_with("# Tarifs\n\n## Couleurs\n\nColoration"),
            "{got:?}"
        );
        assert!(got[0].text.chars().count() <= MAX_CHARS + "# Tarifs".len() + 2);
        // A run of empty headings is not grown without end.
        let empty: String = (0..4000).map(|i| format!("## Titre {i}\n")).collect();
        let got = chunks(&empty, "Plan");
        assert!(got.len() > 40, "{}", got.len());
        assert!(got.iter().all(|c| c.text.chars().count() <= MAX_CHARS));
        // A heading of a thousand characters does not cut its text into
        // crumbs: the text under it stays whole.
        let md = format!(
            "# {}\n\nBonjour le monde, voici le salon.\n",
            "Titre ".repeat(220)
        );
        let got = chunks(&md, "T");
        assert!(
            got.iter()
                .any(|c| c.text.contains("Bonjour le monde, voici le salon.")),
            "{got:?}"
        );
    }
}

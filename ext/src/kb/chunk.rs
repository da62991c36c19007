//! Cutting a Markdown document into chunks of about 800 to 1,200
//! characters along its headings, each with the path of headings above it.
//!
//! A chunk is what a search answers, so it should hold one topic: a section
//! stays whole when it fits, small neighbouring sections are joined (a
//! "Contact" of three lines alone ranks poorly and reads poorly; so does
//! each question of a FAQ), and a long section is cut between paragraphs,
//! then between lines (a table's rows stay together as long as they fit,
//! and each piece a table goes on in starts with its header row), then
//! between words. A chunk's heading path is the deepest one above all
//! of its text, so that what a search shows over a chunk is true of all of
//! it: sections joined across top-level headings are under the document's
//! title.

/// Below this a chunk takes the next section in too.
const MIN_CHARS: usize = 800;
/// No chunk is longer, except for a single word that is.
const MAX_CHARS: usize = 1200;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Chunk {
    /// `Tarifs > Coupes`: the headings above every line of the chunk.
    pub heading: String,
    pub text: String,
}

/// One heading's section: its path and its lines (the heading line first).
struct Section {
    path: Vec<String>,
    text: String,
}

fn heading_of(line: &str) -> Option<(usize, &str)> {
    let level = line.bytes().take_while(|b| *b == b'#').count();
    let rest = &line[level..];
    (1..=6)
        .contains(&level)
        .then_some(())
        .filter(|_| rest.starts_with(' '))
        .map(|_| (level, rest.trim().trim_end_matches('#').trim()))
}

fn sections(markdown: &str, title: &str) -> Vec<Section> {
    let mut stack: Vec<(usize, String)> = Vec::new();
    let mut out = vec![Section {
        path: Vec::new(),
        text: String::new(),
    }];
    for line in markdown.lines() {
        if let Some((level, name)) = heading_of(line) {
            stack.retain(|(l, _)| *l < level);
            stack.push((level, name.to_string()));
            out.push(Section {
                path: stack.iter().map(|(_, n)| n.clone()).collect(),
                text: String::new(),
            });
        }
        let current = out.last_mut().expect("starts with one section");
        current.text.push_str(line);
        current.text.push('\n');
    }
    out.retain(|s| !s.text.trim().is_empty());
    for s in &mut out {
        if s.path.is_empty() {
            s.path.push(title.to_string());
        }
    }
    out
}

/// Cuts `text` into pieces of at most `max` characters at the widest
/// separator that works: blank lines, then lines, then spaces. The pieces
/// are even rather than full: filled to `max` one after the other, 2,500
/// characters would make 1,200, 1,200 and a crumb of 100 that a search
/// ranks poorly and reads out of context; aimed at an even share of what
/// is left, they make three of about 830.
fn split_long(text: &str, max: usize) -> Vec<String> {
    let total = text.chars().count();
    if total <= max {
        return vec![text.to_string()];
    }
    for sep in ["\n\n", "\n", " "] {
        let parts: Vec<&str> = text.split(sep).collect();
        if parts.len() < 2 {
            continue;
        }
        let mut out: Vec<String> = Vec::new();
        let mut current = String::new();
        // Cut between lines, a table's header row and delimiter row start
        // each piece that goes on with its rows: a price list's second half
        // keeps its column names ("Prestation", "Prix"), which a search
        // matches and a reader needs.
        let mut header: Option<String> = None;
        // Characters of `text` in the pieces already cut, and of
        // `current` repeated from before them (a table's header).
        let (mut consumed, mut carried) = (0, 0);
        for (i, part) in parts.iter().enumerate() {
            let starts = (sep == "\n").then(|| table_header(&parts, i)).flatten();
            if !table_row(part) {
                header = None;
            }
            // A header wider than a quarter of a piece is not repeated: it
            // would crowd out the rows.
            let repeated = header.as_ref().filter(|h| h.chars().count() <= max / 4);
            let now = current.chars().count();
            let joined = now + sep.len() + part.chars().count();
            // This piece's even share of what is left, each piece after it
            // carrying the header again.
            let overhead = repeated.map_or(0, |h| h.chars().count() + sep.len());
            let left = total.saturating_sub(consumed) + carried;
            let count = left
                .saturating_sub(overhead)
                .div_ceil(max.saturating_sub(overhead).max(1))
                .max(1);
            let target = (left + overhead * (count - 1)).div_ceil(count);
            // Past its share, the part goes into the next piece when it
            // would overshoot the share by more than stopping here falls
            // short of it.
            let past_share = joined > target && joined - target > target.saturating_sub(now);
            if !current.is_empty() && (joined > max || past_share) {
                if starts.is_some() {
                    // Cut at the delimiter row: the header row goes on
                    // with it rather than end the piece before.
                    let kept = current.rfind('\n').unwrap_or(0);
                    let row = current.split_off(kept);
                    consumed += current.chars().count().saturating_sub(carried) + sep.len();
                    if !current.is_empty() {
                        out.push(std::mem::take(&mut current));
                    }
                    current.push_str(row.trim_start_matches('\n'));
                    carried = 0;
                } else {
                    consumed += now.saturating_sub(carried) + sep.len();
                    out.push(std::mem::take(&mut current));
                    carried = 0;
                    if let Some(h) = repeated {
                        current.push_str(h);
                        carried = h.chars().count() + sep.len();
                    }
                }
            }
            if starts.is_some() {
                header = starts;
            }
            if !current.is_empty() {
                current.push_str(sep);
            }
            current.push_str(part);
        }
        out.push(current);
        return out.into_iter().flat_map(|p| split_long(&p, max)).collect();
    }
    // One word longer than a chunk: cut it by characters.
    let chars: Vec<char> = text.chars().collect();
    chars.chunks(max).map(|c| c.iter().collect()).collect()
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

/// A section's pieces: its text cut under the limit, its heading line
/// kept with the first piece of text under it (cut on its own, a heading
/// made a chunk of one line, which a search for its words answered with
/// nothing else).
fn pieces(section: &str) -> Vec<String> {
    let (first, rest) = section.split_once('\n').unwrap_or((section, ""));
    let body = rest.trim();
    if heading_of(first).is_none() || body.is_empty() {
        return split_long(section, MAX_CHARS);
    }
    // A heading that leaves too little room (a title of a thousand
    // characters) would cut its text into crumbs: then cut as a whole.
    let room = MAX_CHARS.saturating_sub(first.chars().count() + 2);
    if room < MIN_CHARS / 2 {
        return split_long(section, MAX_CHARS);
    }
    let mut pieces = split_long(body, room);
    if let Some(opening) = pieces.first_mut() {
        *opening = format!("{first}\n\n{}", opening.trim_start());
    }
    pieces
}

/// Whether every line of `text` is a heading: a chunk with no text yet.
fn only_headings(text: &str) -> bool {
    text.lines()
        .filter(|l| !l.trim().is_empty())
        .all(|l| heading_of(l).is_some())
}

/// A chunk being filled: its text, and the heading path above all of it.
struct Open {
    path: Vec<String>,
    text: String,
    /// `text`'s length in characters.
    chars: usize,
    /// Whether `text` is headings with nothing under them yet.
    headings_only: bool,
}

/// Headings with nothing under them take the next piece in whatever its
/// length, while they are this short (a run of empty headings is closed as
/// a chunk of its own past it, not grown without end).
const HEADINGS_ALONE_CHARS: usize = 300;

impl Open {
    /// The chunk, under the document's `title` when its sections share no
    /// heading.
    fn close(self, title: &str) -> Chunk {
        Chunk {
            heading: if self.path.is_empty() {
                title.to_string()
            } else {
                self.path.join(" > ")
            },
            text: self.text,
        }
    }
}

/// The chunks of a document titled `title`.
pub fn chunks(markdown: &str, title: &str) -> Vec<Chunk> {
    let mut out: Vec<Chunk> = Vec::new();
    let mut open: Option<Open> = None;
    for section in sections(markdown, title) {
        for piece in pieces(section.text.trim_end()) {
            let piece = piece.trim().to_string();
            if piece.is_empty() {
                continue;
            }
            let piece_chars = piece.chars().count();
            match open.as_mut() {
                // Headings with nothing under them yet take the next piece
                // in, whatever its length.
                Some(c)
                    if (c.headings_only && c.chars <= HEADINGS_ALONE_CHARS)
                        || (c.chars < MIN_CHARS && c.chars + 2 + piece_chars <= MAX_CHARS) =>
                {
                    // The path above both: their common start.
                    let common = c
                        .path
                        .iter()
                        .zip(&section.path)
                        .take_while(|(a, b)| a == b)
                        .count();
                    c.path.truncate(common);
                    c.headings_only &= only_headings(&piece);
                    c.text.push_str("\n\n");
                    c.text.push_str(&piece);
                    c.chars += 2 + piece_chars;
                }
                _ => {
                    out.extend(open.take().map(|c| c.close(title)));
                    open = Some(Open {
                        path: section.path.clone(),
                        headings_only: only_headings(&piece),
                        text: piece,
                        chars: piece_chars,
                    });
                }
            }
        }
    }
    out.extend(open.map(|c| c.close(title)));
    out
}

#[cfg(test)]
mod tests {
    use super::*;

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
        let md = format!(
            "# Tarifs\n\n## Couleurs\n\n{long}\n\n### Mèches\n\n80 €\n\n# Horaires\n\nLundi 9h.\n"
        );
        let got = chunks(&md, "Salon");
        let headings: Vec<&str> = got.iter().map(|c| c.heading.as_str()).collect();
        // The top heading joins its first subsection; "Mèches" follows a
        // full chunk, and "Horaires", small, joins it: no heading is above
        // both, so the chunk is the document's.
        assert_eq!(headings, ["Tarifs", "Salon"]);
        assert_eq!(
            got[0].text,
            format!("# Tarifs\n\n## Couleurs\n\n{}", long.trim_end())
        );
        assert_eq!(got[1].text, "### Mèches\n\n80 €\n\n# Horaires\n\nLundi 9h.");
        // Two subsections joined: the heading above both.
        let md = format!(
            "# Tarifs\n\n## Couleurs\n\n{long}\n\n### Mèches\n\n80 €\n\n### Balayage\n\n90 €\n"
        );
        let got = chunks(&md, "Salon");
        assert_eq!(got[1].heading, "Tarifs > Couleurs");
        assert_eq!(got[1].text, "### Mèches\n\n80 €\n\n### Balayage\n\n90 €");
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
        assert_eq!(lens, [806, 806]);
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
        let got = split_long(&text, 1115);
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
        let got = split_long(table.trim(), 1190);
        let lens: Vec<usize> = got.iter().map(|p| p.chars().count()).collect();
        assert_eq!(lens, [915, 933, 909]);
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
        assert!(got
            .iter()
            .all(|c| c.text.chars().count() <= MAX_CHARS + HEADINGS_ALONE_CHARS + 2));
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

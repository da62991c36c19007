//! Cutting a Markdown document into chunks of about 800 to 1,200
//! characters along its headings, each with the path of headings above it.
//!
//! A chunk is what a search answers, so it should hold one topic: a section
//! stays whole when it fits, small neighbouring sections are joined (a
//! "Contact" of three lines alone ranks poorly and reads poorly; so does
//! each question of a FAQ), and a long section is cut between paragraphs,
//! then between lines (a table's rows stay together as long as they fit),
//! then between words. A chunk's heading path is the deepest one above all
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

/// Cuts `text` into pieces of at most [`MAX_CHARS`] at the widest
/// separator that works: blank lines, then lines, then spaces.
fn split_long(text: &str) -> Vec<String> {
    if text.chars().count() <= MAX_CHARS {
        return vec![text.to_string()];
    }
    for sep in ["\n\n", "\n", " "] {
        let parts: Vec<&str> = text.split(sep).collect();
        if parts.len() < 2 {
            continue;
        }
        let mut out: Vec<String> = Vec::new();
        let mut current = String::new();
        for part in parts {
            let joined = current.chars().count() + sep.len() + part.chars().count();
            if !current.is_empty() && joined > MAX_CHARS {
                out.push(std::mem::take(&mut current));
            }
            if !current.is_empty() {
                current.push_str(sep);
            }
            current.push_str(part);
        }
        out.push(current);
        return out.into_iter().flat_map(|p| split_long(&p)).collect();
    }
    // One word longer than a chunk: cut it by characters.
    let chars: Vec<char> = text.chars().collect();
    chars
        .chunks(MAX_CHARS)
        .map(|c| c.iter().collect())
        .collect()
}

/// A chunk being filled: its text, and the heading path above all of it.
struct Open {
    path: Vec<String>,
    text: String,
}

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
        for piece in split_long(section.text.trim_end()) {
            let piece = piece.trim().to_string();
            if piece.is_empty() {
                continue;
            }
            match open.as_mut() {
                Some(c)
                    if c.text.chars().count() < MIN_CHARS
                        && c.text.chars().count() + 2 + piece.chars().count() <= MAX_CHARS =>
                {
                    // The path above both: their common start.
                    let common = c
                        .path
                        .iter()
                        .zip(&section.path)
                        .take_while(|(a, b)| a == b)
                        .count();
                    c.path.truncate(common);
                    c.text.push_str("\n\n");
                    c.text.push_str(&piece);
                }
                _ => {
                    out.extend(open.take().map(|c| c.close(title)));
                    open = Some(Open {
                        path: section.path.clone(),
                        text: piece,
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
}

//! Output: aligned tables for people (the default), proto3 JSON and YAML for scripts.
//!
//! Table columns are aligned by display width, not bytes, so Vietnamese display names
//! ("Sở Y tế Hà Nội", in composed or decomposed form) line up.

use std::io::Write as _;

use serde::Serialize;
use unicode_width::UnicodeWidthStr as _;

use crate::error::Failure;

/// How results are printed (`-o`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    /// Aligned columns with capitalised headers, like kubectl.
    #[default]
    Table,
    /// proto3 JSON (lowerCamelCase fields; default values left out).
    Json,
    /// The same document as YAML.
    Yaml,
}

/// Columns separating spaces.
const GAP: &str = "   ";

/// How many terminal columns `text` takes: combining marks take none, wide characters two.
pub fn width(text: &str) -> usize {
    text.width()
}

/// `text` padded with spaces to `columns` display columns.
pub fn pad(text: &str, columns: usize) -> String {
    let mut out = text.to_owned();
    out.extend(std::iter::repeat_n(
        ' ',
        columns.saturating_sub(width(text)),
    ));
    out
}

/// `text` cut to at most `columns` display columns, ending in `…` when cut.
pub fn truncate(text: &str, columns: usize) -> String {
    let text = text.split_whitespace().collect::<Vec<_>>().join(" ");
    if width(&text) <= columns {
        return text;
    }
    let mut out = String::new();
    for c in text.chars() {
        if width(&out) + unicode_width::UnicodeWidthChar::width(c).unwrap_or(0) + 1 > columns {
            break;
        }
        out.push(c);
    }
    out.push('…');
    out
}

/// A table: capitalised headers and rows of cells, rendered with aligned columns.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Table {
    headers: Vec<String>,
    rows: Vec<Vec<String>>,
}

impl Table {
    /// A table with these column headers (shown in capitals).
    pub fn new(headers: &[&str]) -> Table {
        Table {
            headers: headers.iter().map(|h| h.to_uppercase()).collect(),
            rows: Vec::new(),
        }
    }

    /// Adds a row (missing cells are blank).
    pub fn row(&mut self, cells: Vec<String>) {
        self.rows.push(cells);
    }

    /// Whether the table has no rows.
    pub fn is_empty(&self) -> bool {
        self.rows.is_empty()
    }

    /// The table as text, one line per row after the header line, each ending in `\n`.
    /// Cells are separated by at least three spaces; lines carry no trailing spaces.
    pub fn render(&self) -> String {
        let columns = self.headers.len();
        let mut widths: Vec<usize> = self.headers.iter().map(|h| width(h)).collect();
        for row in &self.rows {
            for (i, cell) in row.iter().enumerate().take(columns) {
                widths[i] = widths[i].max(width(cell));
            }
        }
        let mut out = String::new();
        let empty = String::new();
        for line in std::iter::once(&self.headers).chain(&self.rows) {
            let mut text = String::new();
            for (i, w) in widths.iter().enumerate() {
                let cell = line.get(i).unwrap_or(&empty);
                if i + 1 == columns {
                    text.push_str(cell);
                } else {
                    text.push_str(&pad(cell, *w));
                    text.push_str(GAP);
                }
            }
            out.push_str(text.trim_end());
            out.push('\n');
        }
        out
    }
}

/// Writes `text` to standard output. A closed pipe (`govctl ... | head`) is not an error.
pub fn emit(text: &str) -> Result<(), Failure> {
    let mut stdout = std::io::stdout().lock();
    match stdout
        .write_all(text.as_bytes())
        .and_then(|()| stdout.flush())
    {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Ok(()),
        Err(e) => Err(Failure::other(format!("writing the output: {e}"))),
    }
}

/// `value` as JSON (pretty, with a final newline) or YAML.
pub fn document<T: Serialize + ?Sized>(format: Format, value: &T) -> Result<String, Failure> {
    match format {
        Format::Json => serde_json::to_string_pretty(value)
            .map(|mut s| {
                s.push('\n');
                s
            })
            .map_err(|e| Failure::other(format!("encoding JSON: {e}"))),
        Format::Yaml | Format::Table => {
            serde_yaml::to_string(value).map_err(|e| Failure::other(format!("encoding YAML: {e}")))
        }
    }
}

/// Prints `value` as the table `table` makes, or as JSON or YAML.
pub fn print<T: Serialize + ?Sized>(
    format: Format,
    value: &T,
    table: impl FnOnce() -> String,
) -> Result<(), Failure> {
    match format {
        Format::Table => emit(&table()),
        other => emit(&document(other, value)?),
    }
}

/// How long ago `time` (RFC 3339) was, as kubectl prints ages: `45s`, `12m`, `5h`, `3d`,
/// `2y`; `-` when unknown.
pub fn age(time: &str, now: jiff::Timestamp) -> String {
    let Ok(then) = time.parse::<jiff::Timestamp>() else {
        return "-".to_owned();
    };
    let seconds = now.duration_since(then).as_secs().max(0);
    match seconds {
        s if s < 120 => format!("{s}s"),
        s if s < 2 * 3600 => format!("{}m", s / 60),
        s if s < 2 * 86400 => format!("{}h", s / 3600),
        s if s < 2 * 365 * 86400 => format!("{}d", s / 86400),
        s => format!("{}y", s / (365 * 86400)),
    }
}

/// `text`, or `-` when empty.
pub fn or_dash(text: &str) -> String {
    if text.is_empty() {
        "-".to_owned()
    } else {
        text.to_owned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn columns_align_by_display_width_with_vietnamese_names() {
        let mut table = Table::new(&["name", "display name", "level"]);
        table.row(vec![
            "so-y-te".into(),
            "Sở Y tế Hà Nội".into(),
            "Province".into(),
        ]);
        table.row(vec![
            "bo-tc".into(),
            "Bộ Tài chính".into(),
            "Central".into(),
        ]);
        // Decomposed form: "Ở" as O + combining horn + combining hook.
        table.row(vec![
            "so-nd".into(),
            "So\u{31b}\u{309} Nội vụ".into(),
            "Province".into(),
        ]);
        let text = table.render();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines[0], "NAME      DISPLAY NAME     LEVEL");
        assert_eq!(lines[1], "so-y-te   Sở Y tế Hà Nội   Province");
        assert_eq!(lines[2], "bo-tc     Bộ Tài chính     Central");
        // Every LEVEL cell starts at the same display column.
        for line in &lines {
            let (before, _) = line
                .rsplit_once("   ")
                .expect("a gap before the last column");
            assert_eq!(
                width(before) + 3,
                width("so-y-te   Sở Y tế Hà Nội   "),
                "{line}"
            );
        }
        assert!(text.ends_with('\n'));
        assert!(!text.lines().any(|l| l.ends_with(' ')));
    }

    #[test]
    fn byte_lengths_would_misalign() {
        // The reason for counting display width: these two take the same columns but not
        // the same bytes.
        assert_eq!(width("Sở Y tế"), width("So Y te"));
        assert_ne!("Sở Y tế".len(), "So Y te".len());
        assert_eq!(width("├── "), 4);
    }

    #[test]
    fn truncation_keeps_whole_characters() {
        assert_eq!(
            truncate("Cần thêm CPU cho mùa nộp thuế", 12),
            "Cần thêm CP…"
        );
        assert_eq!(truncate("ngắn", 12), "ngắn");
        assert_eq!(truncate("a\nb", 12), "a b");
    }

    #[test]
    fn ages_read_like_kubectl() {
        let now: jiff::Timestamp = "2026-01-10T00:00:00Z".parse().unwrap();
        assert_eq!(age("2026-01-09T23:59:15Z", now), "45s");
        assert_eq!(age("2026-01-09T23:48:00Z", now), "12m");
        assert_eq!(age("2026-01-09T19:00:00Z", now), "5h");
        assert_eq!(age("2026-01-07T00:00:00Z", now), "3d");
        assert_eq!(age("2023-01-01T00:00:00Z", now), "3y");
        assert_eq!(age("", now), "-");
    }

    #[test]
    fn json_and_yaml_documents() {
        let value = serde_json::json!({"displayName": "Sở Y tế"});
        let json = document(Format::Json, &value).unwrap();
        assert!(json.contains("\"displayName\": \"Sở Y tế\""), "{json}");
        let yaml = document(Format::Yaml, &value).unwrap();
        assert_eq!(yaml, "displayName: Sở Y tế\n");
    }
}

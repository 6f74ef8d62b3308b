//! How list commands print: aligned columns for people, one JSON array for programs.

use std::io::Write;

use serde::Serialize;

/// Prints `items` as exactly one JSON array on stdout.
pub fn print_json<T: Serialize>(items: &[T]) -> anyhow::Result<()> {
    let text = serde_json::to_string_pretty(items)?;
    write_stdout(&text)
}

/// Prints one JSON object on stdout.
pub fn print_json_object<T: Serialize>(item: &T) -> anyhow::Result<()> {
    let text = serde_json::to_string_pretty(item)?;
    write_stdout(&text)
}

/// Prints a header row and rows as left-aligned columns separated by two spaces.
pub fn print_table(headers: &[&str], rows: &[Vec<String>]) -> anyhow::Result<()> {
    write_stdout(table(headers, rows).trim_end_matches('\n'))
}

/// Prints one line of text on stdout.
pub fn print_line(text: &str) -> anyhow::Result<()> {
    write_stdout(text)
}

/// `1 account`, `2 accounts`.
pub fn count(n: impl Into<u64>, one: &str, many: &str) -> String {
    let n = n.into();
    format!("{n} {}", if n == 1 { one } else { many })
}

fn write_stdout(text: &str) -> anyhow::Result<()> {
    let mut out = std::io::stdout().lock();
    writeln!(out, "{text}")?;
    out.flush()?;
    Ok(())
}

fn table(headers: &[&str], rows: &[Vec<String>]) -> String {
    let mut widths: Vec<usize> = headers.iter().map(|h| h.chars().count()).collect();
    for row in rows {
        for (i, cell) in row.iter().enumerate() {
            let w = cell.chars().count();
            match widths.get_mut(i) {
                Some(cur) => *cur = (*cur).max(w),
                None => widths.push(w),
            }
        }
    }
    let mut out = String::new();
    let header_row: Vec<String> = headers.iter().map(|h| h.to_string()).collect();
    for row in std::iter::once(&header_row).chain(rows.iter()) {
        let mut line = String::new();
        for (i, cell) in row.iter().enumerate() {
            if i > 0 {
                line.push_str("  ");
            }
            line.push_str(cell);
            if i + 1 < row.len() {
                let pad = widths[i].saturating_sub(cell.chars().count());
                line.extend(std::iter::repeat_n(' ', pad));
            }
        }
        out.push_str(line.trim_end());
        out.push('\n');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn columns_line_up() {
        let t = table(
            &["NAME", "WEIGHT"],
            &[
                vec!["default".into(), "1".into()],
                vec!["b".into(), "250".into()],
            ],
        );
        assert_eq!(t, "NAME     WEIGHT\ndefault  1\nb        250\n");
    }

    #[test]
    fn counts() {
        assert_eq!(count(1u64, "line", "lines"), "1 line");
        assert_eq!(count(0u64, "line", "lines"), "0 lines");
        assert_eq!(count(2u32, "bad line", "bad lines"), "2 bad lines");
    }

    #[test]
    fn empty_table_is_the_header() {
        assert_eq!(table(&["A", "B"], &[]), "A  B\n");
    }
}

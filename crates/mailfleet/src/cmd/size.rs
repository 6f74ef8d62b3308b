//! Sizes for people (parsing lives in `mailfleet_config::size`).

pub use mailfleet_config::size::parse_size;

/// A size for people: `unlimited`, whole units where exact (`500M`), else bytes.
pub fn format_size(bytes: i64) -> String {
    if bytes == 0 {
        return "unlimited".into();
    }
    format_bytes(bytes)
}

/// Bytes for people, `0` included: the largest unit that divides exactly, else a rounded
/// value with one decimal (`1.5M`).
pub fn format_bytes(bytes: i64) -> String {
    const UNITS: [(u32, &str); 4] = [(40, "T"), (30, "G"), (20, "M"), (10, "K")];
    if bytes == 0 {
        return "0".into();
    }
    for (shift, unit) in UNITS {
        let scale = 1i64 << shift;
        if bytes % scale == 0 {
            return format!("{}{unit}", bytes / scale);
        }
    }
    for (shift, unit) in UNITS {
        let scale = 1i64 << shift;
        if bytes >= scale {
            return format!("{:.1}{unit}", bytes as f64 / scale as f64);
        }
    }
    bytes.to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_round_trip() {
        for s in ["500M", "2G", "1K", "7T", "1023"] {
            assert_eq!(format_size(parse_size(s).unwrap()), s);
        }
        assert_eq!(format_size(0), "unlimited");
        assert_eq!(format_bytes(0), "0");
        assert_eq!(format_bytes(1536 * 1024 + 1), "1.5M");
    }
}

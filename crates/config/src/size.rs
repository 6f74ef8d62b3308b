//! Sizes in settings, on the command line and in imports: `500M`, `2G`, `1024K`, plain bytes; `0` or
//! `unlimited` (also `none`, or an empty import field) for no limit. Units are binary
//! (1K = 1024 bytes) and may be written `K`, `KB` or `KiB`, in any case.

/// A size that could not be read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MalformedSize(pub String);

impl std::fmt::Display for MalformedSize {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "malformed size {:?} (expected bytes or a number with K, M, G or T, or unlimited)",
            self.0
        )
    }
}

impl std::error::Error for MalformedSize {}

/// Parses a size into bytes; 0 means no limit.
pub fn parse_size(input: &str) -> Result<i64, MalformedSize> {
    let bad = || MalformedSize(input.to_string());
    let s = input.trim();
    if s.is_empty() {
        return Err(bad());
    }
    let lower = s.to_ascii_lowercase();
    if lower == "unlimited" || lower == "none" {
        return Ok(0);
    }
    let digits_end = lower
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(lower.len());
    let (number, unit) = lower.split_at(digits_end);
    if number.is_empty() {
        return Err(bad());
    }
    let shift = match unit.trim_start() {
        "" | "b" => 0,
        "k" | "kb" | "kib" => 10,
        "m" | "mb" | "mib" => 20,
        "g" | "gb" | "gib" => 30,
        "t" | "tb" | "tib" => 40,
        _ => return Err(bad()),
    };
    let n: i64 = number.parse().map_err(|_| bad())?;
    n.checked_mul(1i64 << shift).ok_or_else(bad)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_units_and_none() {
        assert_eq!(parse_size("500M"), Ok(500 << 20));
        assert_eq!(parse_size("2G"), Ok(2 << 30));
        assert_eq!(parse_size("1024K"), Ok(1 << 20));
        assert_eq!(parse_size("1024k"), Ok(1 << 20));
        assert_eq!(parse_size("3 MiB"), Ok(3 << 20));
        assert_eq!(parse_size("1TB"), Ok(1 << 40));
        assert_eq!(parse_size("12345"), Ok(12345));
        assert_eq!(parse_size("12345B"), Ok(12345));
        assert_eq!(parse_size("0"), Ok(0));
        assert_eq!(parse_size("unlimited"), Ok(0));
        assert_eq!(parse_size("Unlimited"), Ok(0));
    }

    #[test]
    fn refuses_garbage() {
        for bad in [
            "12Q",
            "",
            " ",
            "M",
            "-5",
            "1.5G",
            "5 G B",
            "99999999999999999999",
            "9999999T",
        ] {
            let err = parse_size(bad).unwrap_err();
            assert_eq!(err.0, bad);
        }
        assert!(
            parse_size("12Q")
                .unwrap_err()
                .to_string()
                .starts_with("malformed size \"12Q\"")
        );
    }
}

//! The few JSON values a rendering writes, formatted by hand to keep the
//! guest small.

use std::fmt::Write as _;

/// Appends `value` as a JSON number, or `null` when it is not finite (JSON
/// has no NaN or infinity).
///
/// An integral value keeps a fractional part (`1.0`, not `1`), so that a
/// reader that tells integers from floats always reads a float.
pub fn push_f64(out: &mut String, value: f64) {
    if !value.is_finite() {
        out.push_str("null");
        return;
    }
    let start = out.len();
    // `Display` for `f64` prints the shortest digits that read back to the
    // same value, never in exponent form.
    write!(out, "{value}").expect("writing to a String cannot fail");
    if !out[start..].contains('.') {
        out.push_str(".0");
    }
}

/// Appends `value` as a JSON number, or `null` when it is `None`.
pub fn push_opt_f64(out: &mut String, value: Option<f64>) {
    match value {
        Some(value) => push_f64(out, value),
        None => out.push_str("null"),
    }
}

/// Appends `value` as a JSON integer.
pub fn push_u64(out: &mut String, value: u64) {
    write!(out, "{value}").expect("writing to a String cannot fail");
}

#[cfg(test)]
mod tests {
    use super::*;

    fn f64_text(value: f64) -> String {
        let mut out = String::new();
        push_f64(&mut out, value);
        out
    }

    #[test]
    fn numbers() {
        let cases = [
            (0.0, "0.0"),
            (-0.0, "-0.0"),
            (1.0, "1.0"),
            (0.1, "0.1"),
            (1.5e-7, "0.00000015"),
            (-2.25, "-2.25"),
            (f64::NAN, "null"),
            (f64::INFINITY, "null"),
            (f64::NEG_INFINITY, "null"),
        ];
        for (value, expected) in cases {
            assert_eq!(f64_text(value), expected, "{value:?}");
        }
    }

    #[test]
    fn extreme_values_read_back_exactly() {
        for value in [f64::MAX, f64::MIN_POSITIVE, 5e-324, 1e21, 123_456.789] {
            let text = f64_text(value);
            assert_eq!(text.parse::<f64>(), Ok(value), "{text}");
        }
    }

    #[test]
    fn optional_and_integer() {
        let mut out = String::new();
        push_opt_f64(&mut out, None);
        out.push(',');
        push_opt_f64(&mut out, Some(2.0));
        out.push(',');
        push_u64(&mut out, u64::MAX);
        assert_eq!(out, "null,2.0,18446744073709551615");
    }
}

//! What the benchmark binaries (`store-bench`, `vision-bench`) share: facts read from the
//! operating system and the number formatting of their tables.

pub mod sys;

/// `value` rounded to a whole number with thousands separators: `1234567.4` → `1,234,567`.
pub fn thousands(value: f64) -> String {
    let digits = format!("{:.0}", value.max(0.0));
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

//! Timestamps as Ironic writes them.

use time::OffsetDateTime;
use time::macros::format_description;

/// API form: `2026-11-23T04:23:58.510583+00:00`.
pub fn now_iso() -> String {
    format_iso(OffsetDateTime::now_utc())
}

/// API form of a time.
pub fn format_iso(t: OffsetDateTime) -> String {
    t.format(format_description!(
        "[year]-[month]-[day]T[hour]:[minute]:[second].[subsecond digits:6]+00:00"
    ))
    .expect("a UTC time formats")
}

/// `driver_internal_info` form (naive UTC): `2026-11-23T04:23:58.510583`.
pub fn now_naive() -> String {
    OffsetDateTime::now_utc()
        .format(format_description!(
            "[year]-[month]-[day]T[hour]:[minute]:[second].[subsecond digits:6]"
        ))
        .expect("a UTC time formats")
}

/// Python's `str(datetime.utcnow())` (a space between date and time, naive UTC):
/// `2026-11-23 04:23:58.510583`, as Ironic writes `raid_config.last_updated`.
pub fn now_python_str() -> String {
    OffsetDateTime::now_utc()
        .format(format_description!(
            "[year]-[month]-[day] [hour]:[minute]:[second].[subsecond digits:6]"
        ))
        .expect("a UTC time formats")
}

/// Parse either form back (naive times are UTC).
pub fn parse(text: &str) -> Option<OffsetDateTime> {
    let trimmed = text.trim_end_matches("+00:00").trim_end_matches('Z');
    let naive = time::PrimitiveDateTime::parse(
        trimmed,
        format_description!("[year]-[month]-[day]T[hour]:[minute]:[second].[subsecond]"),
    )
    .ok()?;
    Some(naive.assume_utc())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips() {
        let now = now_iso();
        assert!(now.ends_with("+00:00") && now.len() == 32, "{now}");
        assert!(parse(&now).is_some());
        assert!(parse(&now_naive()).is_some());
    }
}

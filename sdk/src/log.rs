//! Logging to the host. Records are tagged by the host with the plugin id and the current prompt
//! id and kept in the plugin's log ring buffer. Use the crate-root macros:
//! `comfyhost_sdk::info!("routed {} to {}", id, backend)`.

pub use crate::host::LogLevel as Level;

/// Write one record at `level`.
pub fn write(level: Level, message: &str) {
    crate::hostcall::log(level, message);
}

/// Log at `trace` level, `format!`-style.
#[macro_export]
macro_rules! trace {
    ($($arg:tt)+) => { $crate::log::write($crate::log::Level::Trace, &::std::format!($($arg)+)) };
}

/// Log at `debug` level, `format!`-style.
#[macro_export]
macro_rules! debug {
    ($($arg:tt)+) => { $crate::log::write($crate::log::Level::Debug, &::std::format!($($arg)+)) };
}

/// Log at `info` level, `format!`-style.
#[macro_export]
macro_rules! info {
    ($($arg:tt)+) => { $crate::log::write($crate::log::Level::Info, &::std::format!($($arg)+)) };
}

/// Log at `warn` level, `format!`-style.
#[macro_export]
macro_rules! warn {
    ($($arg:tt)+) => { $crate::log::write($crate::log::Level::Warn, &::std::format!($($arg)+)) };
}

/// Log at `error` level, `format!`-style.
#[macro_export]
macro_rules! error {
    ($($arg:tt)+) => { $crate::log::write($crate::log::Level::Error, &::std::format!($($arg)+)) };
}

#[cfg(test)]
mod tests {
    #[test]
    fn macros_format_and_write_natively_without_a_host() {
        let who = "tester";
        crate::info!("hello {who}");
        crate::warn!("{} of {}", 1, 2);
        crate::error!("boom");
        crate::debug!("d");
        crate::trace!("t");
    }
}

//! Helpers of armorlake's benchmarks (the binaries are under `src/bin`).
//!
//! - [`embedded`]: `armorlake up` and a simulator in this process, for the benchmarks
//!   that read rows out of one node.
//! - [`copy`]: Arrow record batches as PostgreSQL `COPY ... FROM STDIN` text, and the
//!   `CREATE TABLE` of an armorlake table in PostgreSQL's types.
//! - [`ingest`]: the `ingest` benchmark's run and report.
//! - [`load`]: many PostgreSQL sessions sending a mix of queries, with the server's memory.
//! - [`postgres`]: a throwaway PostgreSQL cluster under a temporary directory.
//! - [`process`]: this process's memory (VmRSS, VmHWM) and CPU time, and the machine's.

pub mod copy;
pub mod embedded;
pub mod ingest;
pub mod load;
pub mod postgres;
pub mod process;

/// `1234567` as `1,234,567`.
pub fn thousands(n: u64) -> String {
    let digits = n.to_string();
    let mut out = String::with_capacity(digits.len() + digits.len() / 3);
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

/// A byte count in MiB or GiB, one decimal.
pub fn human_bytes(bytes: u64) -> String {
    const MIB: f64 = 1024.0 * 1024.0;
    let b = bytes as f64;
    if b >= 1024.0 * MIB {
        format!("{:.2} GiB", b / (1024.0 * MIB))
    } else {
        format!("{:.1} MiB", b / MIB)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_numbers() {
        assert_eq!(thousands(0), "0");
        assert_eq!(thousands(999), "999");
        assert_eq!(thousands(1000), "1,000");
        assert_eq!(thousands(1_234_567), "1,234,567");
        assert_eq!(human_bytes(3 * 1024 * 1024), "3.0 MiB");
        assert_eq!(human_bytes(3 * 1024 * 1024 * 1024), "3.00 GiB");
    }
}

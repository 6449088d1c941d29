//! Measures JPEG → segments and segments → JPEG throughput at 512x512.
//!
//! Run with `cargo run --release -p lpgw-media --example media_bench [frames]`.

fn main() {
    let mut opts = lpgw_media::BenchOptions::default();
    if let Some(n) = std::env::args().nth(1).and_then(|a| a.parse().ok()) {
        opts.frames = n;
    }
    match lpgw_media::run_media_bench(&opts) {
        Ok(report) => println!("{report}"),
        Err(e) => {
            eprintln!("bench failed: {e}");
            std::process::exit(1);
        }
    }
}

// Regenerates the bundled example data under `examples/data/` (deterministic:
// `tests/example_data.rs` checks the committed files match this program).
//
// `cargo run --release --example make_example_data [OUT_DIR]`

use std::path::PathBuf;

use token_sampler::validate::Stream;
use token_sampler::Batch;

/// The vocabulary of the 32k example batch (a Llama-2-sized vocabulary).
pub const VOCAB: usize = 32_000;

/// Six rows that look like a language model's: Zipf-like tails with different
/// slopes, a confident row, an uncertain row, and one with masked tokens.
pub fn batch_32k() -> Batch {
    let mut s = Stream::new(32_000);
    let mut rows: Vec<Vec<f32>> = Vec::new();
    let zipf = |s: &mut Stream, slope: f64, noise: f64| -> Vec<f32> {
        let mut x: Vec<f32> = (0..VOCAB)
            .map(|r| (8.0 - slope * ((r + 1) as f64).ln() + noise * s.normal()) as f32)
            .collect();
        for i in (1..VOCAB).rev() {
            let j = s.below(i + 1);
            x.swap(i, j);
        }
        x
    };
    rows.push(zipf(&mut s, 1.1, 0.3)); // typical continuation
    rows.push(zipf(&mut s, 0.6, 0.3)); // open-ended (flatter)
    let mut peaked: Vec<f32> = (0..VOCAB).map(|_| (2.0 * s.normal()) as f32).collect();
    peaked[1_234] = 24.0; // near-certain next token
    peaked[1_235] = 19.5;
    rows.push(peaked);
    rows.push((0..VOCAB).map(|_| (3.0 * s.normal()) as f32).collect()); // normal(0, 3)
    rows.push((0..VOCAB).map(|_| (0.5 * s.normal()) as f32).collect()); // uncertain
    let mut masked = zipf(&mut s, 1.1, 0.3);
    for (i, v) in masked.iter_mut().enumerate() {
        if i % 7 == 3 || i >= 31_000 {
            *v = f32::NEG_INFINITY; // masked ids (e.g. a grammar)
        }
    }
    rows.push(masked);
    Batch::from_rows(&rows).expect("equal rows")
}

/// The seed articles' 10-token rows: the temperature sweep and the four use cases.
pub fn seed_rows_json() -> String {
    let rows: [[f32; 10]; 5] = [
        [2.2, 1.8, 1.4, 0.9, 0.2, 0.1, -0.3, -0.6, -0.8, -1.0],
        [4.5, 0.3, 0.1, -0.2, -0.5, -1.0, -1.2, -1.5, -2.0, -2.5],
        [2.1, 1.9, 1.7, 1.3, 0.8, 0.5, 0.2, -0.2, -0.5, -1.0],
        [1.2, 1.1, 1.0, 0.9, 0.8, 0.7, 0.6, 0.5, 0.4, 0.3],
        [1.5, 1.4, 1.2, 1.0, 0.8, 0.6, 0.4, 0.2, 0.0, -0.2],
    ];
    let body: Vec<String> = rows
        .iter()
        .map(|r| format!("  {}", serde_json::to_string(&r.to_vec()).expect("numbers")))
        .collect();
    format!("[\n{}\n]\n", body.join(",\n"))
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let out = std::env::args()
        .nth(1)
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("examples/data"));
    std::fs::create_dir_all(&out)?;
    batch_32k().save_npy(&out.join("batch_32k.npy"))?;
    std::fs::write(out.join("seed_rows.json"), seed_rows_json())?;
    eprintln!("wrote {}/batch_32k.npy and seed_rows.json", out.display());
    Ok(())
}

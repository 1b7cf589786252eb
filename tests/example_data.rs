//! The bundled example data is exactly what `examples/make_example_data.rs`
//! generates, so anyone can regenerate and audit it.

#[allow(dead_code)]
mod gen {
    include!("../examples/make_example_data.rs");
}

#[test]
fn bundled_files_match_the_generator() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/data");
    let batch = token_sampler::Batch::load(&dir.join("batch_32k.npy"), None).unwrap();
    assert_eq!(batch, gen::batch_32k());
    assert_eq!((batch.rows(), batch.vocab()), (6, 32_000));
    let seed = std::fs::read_to_string(dir.join("seed_rows.json")).unwrap();
    assert_eq!(seed, gen::seed_rows_json());
    // The params examples parse and validate against the batch.
    for name in ["params_rows.json", "params_dynamic.json"] {
        let v: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(dir.join(name)).unwrap()).unwrap();
        let items = match v {
            serde_json::Value::Array(a) => a,
            one => vec![one],
        };
        for (row, item) in items.into_iter().enumerate() {
            token_sampler::SamplingParams::from_json_value(row, item)
                .unwrap()
                .validate(row, 32_000)
                .unwrap();
        }
    }
}

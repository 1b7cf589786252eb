//! Compiles tests/c/test_token_sampler.c with the system C compiler (`cc`,
//! or `$CC`) against include/token_sampler.h, links it to the
//! libtoken_sampler_c.so cargo built for this test run, and runs it: the C
//! ABI exercised from C, as a C program uses it.

use std::path::{Path, PathBuf};
use std::process::Command;

/// The cdylib cargo built beside this test binary (target/<profile>/deps).
fn cdylib_dir() -> PathBuf {
    let exe = std::env::current_exe().expect("test binary path");
    let deps = exe.parent().expect("deps folder").to_path_buf();
    let name = format!(
        "{}token_sampler_c{}",
        std::env::consts::DLL_PREFIX,
        std::env::consts::DLL_SUFFIX
    );
    for dir in [
        deps.clone(),
        deps.parent().expect("profile folder").to_path_buf(),
    ] {
        if dir.join(&name).exists() {
            return dir;
        }
    }
    panic!("{name} not found next to {}", exe.display());
}

#[test]
fn c_program_passes() {
    let crate_dir = Path::new(env!("CARGO_MANIFEST_DIR"));
    let lib_dir = cdylib_dir();
    let exe = Path::new(env!("CARGO_TARGET_TMPDIR")).join("test_token_sampler_c");
    let cc = std::env::var("CC").unwrap_or_else(|_| "cc".into());
    let status = Command::new(&cc)
        .args(["-std=c11", "-Wall", "-Wextra", "-Werror", "-O1", "-pthread"])
        .arg("-I")
        .arg(crate_dir.join("include"))
        .arg(crate_dir.join("tests/c/test_token_sampler.c"))
        .arg("-o")
        .arg(&exe)
        .arg("-L")
        .arg(&lib_dir)
        .arg(format!("-Wl,-rpath,{}", lib_dir.display()))
        .args(["-ltoken_sampler_c", "-lm"])
        .status()
        .unwrap_or_else(|e| panic!("cannot run the C compiler `{cc}`: {e}"));
    assert!(status.success(), "{cc} failed to compile the C test");
    // The loader searches LD_LIBRARY_PATH (which cargo sets to include the
    // profile folder, where an older `cargo build` may have left another
    // copy of the library) before the run path: the library of this run
    // comes first.
    let search = match std::env::var_os("LD_LIBRARY_PATH") {
        Some(rest) => {
            let mut dirs = vec![lib_dir.clone()];
            dirs.extend(std::env::split_paths(&rest));
            std::env::join_paths(dirs).expect("library search path")
        }
        None => lib_dir.clone().into_os_string(),
    };
    let out = Command::new(&exe)
        .env("LD_LIBRARY_PATH", search)
        .env(
            "XDG_RUNTIME_DIR",
            std::env::var("XDG_RUNTIME_DIR").unwrap_or_else(|_| "/tmp".into()),
        )
        .output()
        .expect("run the C test");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    println!("{stdout}");
    eprintln!("{stderr}");
    assert!(
        out.status.success(),
        "the C test failed:\n{stdout}\n{stderr}"
    );
    assert!(stdout.contains(" 0 failed"), "{stdout}");
}

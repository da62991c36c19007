//! Compresses the front end's files (`web/`) with gzip at build time, into
//! `OUT_DIR/web/…gz`, for `src/web.rs` to embed beside the originals: a
//! browser that accepts gzip gets about a quarter of the bytes, and the
//! server compresses nothing while it runs.

use std::io::Write;
use std::path::Path;

fn main() {
    let out = std::env::var("OUT_DIR").expect("cargo sets OUT_DIR");
    println!("cargo:rerun-if-changed=web");
    compress_dir(Path::new("web"), &Path::new(&out).join("web"));
}

/// Every file below `from`, gzipped (level 9: once per build) under `to`.
fn compress_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).expect("create the compressed files' folder");
    let mut entries: Vec<_> = std::fs::read_dir(from)
        .expect("read web/")
        .map(|e| e.expect("a web/ entry").path())
        .collect();
    entries.sort();
    for path in entries {
        let name = path.file_name().expect("an entry has a name");
        if path.is_dir() {
            compress_dir(&path, &to.join(name));
            continue;
        }
        let bytes = std::fs::read(&path).expect("read a web/ file");
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
        gz.write_all(&bytes).expect("gzip in memory");
        let mut target = name.to_os_string();
        target.push(".gz");
        std::fs::write(to.join(target), gz.finish().expect("gzip in memory"))
            .expect("write a compressed file");
    }
}

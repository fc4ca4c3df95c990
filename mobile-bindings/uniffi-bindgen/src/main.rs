//! `cargo run -p uniffi-bindgen -- generate --library <libvigil_ffi> --language <kotlin|swift|python> --out-dir <dir>`

fn main() {
    uniffi::uniffi_bindgen_main()
}

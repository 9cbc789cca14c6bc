//! Fuzz target `request_headers`: see `paymesh_fuzz::request_headers` for the properties checked.

fn main() {
    loop {
        honggfuzz::fuzz!(|data: &[u8]| { paymesh_fuzz::request_headers(data) });
    }
}

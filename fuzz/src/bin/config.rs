//! Fuzz target `config`: see `paymesh_fuzz::config` for the properties checked.

fn main() {
    loop {
        honggfuzz::fuzz!(|data: &[u8]| { paymesh_fuzz::config(data) });
    }
}

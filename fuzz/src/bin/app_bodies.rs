//! Fuzz target `app_bodies`: see `paymesh_fuzz::app_bodies` for the properties checked.

fn main() {
    loop {
        honggfuzz::fuzz!(|data: &[u8]| { paymesh_fuzz::app_bodies(data) });
    }
}

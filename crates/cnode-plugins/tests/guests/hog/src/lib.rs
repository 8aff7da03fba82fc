//! Test guest: `handle` allocates (and touches) memory without end.

wit_bindgen::generate!({ world: "service", path: "../../../../../wit" });

struct Hog;

impl Guest for Hog {
    fn handle(_: Request) -> Response {
        let mut hoard: Vec<Vec<u8>> = Vec::new();
        loop {
            hoard.push(vec![1u8; 1 << 20]);
            std::hint::black_box(&hoard);
        }
    }

    fn on_record(_: StoredRecord) {}

    fn tick() {}
}

export!(Hog);

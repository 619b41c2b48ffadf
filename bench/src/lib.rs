//! What `bench` measures, shared by the binary (which fills and prints it)
//! and its test (which checks that every figure was produced).

pub mod catalogue;

pub mod exclude;
pub mod fsmeta;
pub mod prefetch;
pub mod stream;

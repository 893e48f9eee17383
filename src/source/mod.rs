pub mod exclude;
pub mod fsmeta;
pub mod stream;

pub mod exclude;
pub mod fsmeta;
pub mod postgres;
pub mod prefetch;
pub mod redis;
pub mod stream;

pub mod decision;
pub mod pod;
pub mod review;

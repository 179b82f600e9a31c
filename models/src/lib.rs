//! Model zoo.

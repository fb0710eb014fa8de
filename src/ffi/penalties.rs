//! C exports of the `penalties` samplers.

//! C exports of the `dirichlet` samplers.

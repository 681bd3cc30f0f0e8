//! Tests of the FHIR R4 lab parser.

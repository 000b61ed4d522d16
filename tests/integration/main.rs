//! The integration tests: one binary, one module per area, driving the real `supportopsd`.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test code: a failure is the point

mod alerts;
mod api;
mod attacks_api;
mod attacks_hardening;
mod attacks_ingress;
mod attacks_manifest;
mod attacks_notion;
mod attacks_plan;
mod backup;
mod bulk;
mod check_platform;
mod ci;
mod console;
mod console_browser;
mod crash;
mod daemon;
mod daemon_support;
mod demo;
mod e2e_freshdesk;
mod e2e_google_sheets;
mod e2e_notion;
mod e2e_ticketing;
mod e2e_trello;
mod e2e_zendesk;
mod events_fixture;
mod explain;
mod export;
mod first_rule;
mod generated;
mod gitops;
mod history;
mod holds;
mod openapi;
mod operator_cli;
mod plan;
mod plan_replay;
mod reconcile;
mod secret;
mod shadow;
mod support;
mod systemd;
mod testcmd;
mod upgrade;
mod validate;

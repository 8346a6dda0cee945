#define DOCTEST_CONFIG_IMPLEMENT
#include <doctest/doctest.h>

#include <pgnotify/actors/log.hpp>

int main(int argc, char** argv) {
  // The scripted failures would fill the output with expected warnings.
  pgnotify::logger()->set_level(spdlog::level::off);
  return doctest::Context(argc, argv).run();
}

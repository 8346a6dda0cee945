#define DOCTEST_CONFIG_IMPLEMENT
#include <doctest/doctest.h>

#include <pgnotify/actors/log.hpp>

int main(int argc, char** argv) {
  pgnotify::logger()->set_level(spdlog::level::warn);
  return doctest::Context(argc, argv).run();
}

// notification_batch: one buffer per batch, shared by prefixes, exact on the wire.
#include <doctest/doctest.h>

#include <string>
#include <vector>

#include <caf/binary_deserializer.hpp>
#include <caf/binary_serializer.hpp>

#include "caf_fixture.hpp"

using namespace pgnotify;

namespace {

std::vector<std::string> texts(const notification_batch& batch) {
  std::vector<std::string> result;
  for (const auto& n : batch)
    result.push_back(std::string{n.channel} + "/" + std::string{n.payload} + "/" +
                     std::to_string(n.backend_pid) + "@" + std::to_string(n.generation));
  return result;
}

}  // namespace

TEST_CASE("batch: a built batch gives back every notification byte for byte and in order") {
  notification_batch::builder out;
  std::string with_nul{"a\0b", 3};
  out.add("c", "one", 1);
  out.add("c", "", 2);
  out.add("Weird \"Name\"", with_nul, 3);
  out.add("c", std::string(7999, 'x'), 4);
  auto batch = out.finish(7);
  REQUIRE(batch.size() == 4);
  CHECK(out.empty());
  CHECK(batch.generation() == 7);
  CHECK(batch[2].payload == with_nul);
  CHECK(batch[3].payload.size() == 7999);
  CHECK(texts(batch.first(3)) ==
        std::vector<std::string>{"c/one/1@7", "c//2@7", "Weird \"Name\"/" + with_nul + "/3@7"});
  CHECK_FALSE(batch.one_channel());
  CHECK(batch.first(2).one_channel());
  CHECK(texts(batch.only("c")) ==
        std::vector<std::string>{"c/one/1@7", "c//2@7", "c/" + std::string(7999, 'x') + "/4@7"});
}

TEST_CASE("batch: a prefix shares the buffer and the builder starts a new one") {
  notification_batch::builder out;
  for (int i = 0; i < 10; ++i) out.add("c", std::to_string(i), i);
  auto batch = out.finish(1);
  auto prefix = batch.first(4);
  CHECK(prefix.size() == 4);
  CHECK(prefix[3].payload.data() == batch[3].payload.data());
  CHECK(batch.first(99).size() == 10);
  out.add("d", "next", 1);
  auto next = out.finish(2);
  CHECK(texts(next) == std::vector<std::string>{"d/next/1@2"});
  CHECK(batch[9].payload == "9");  // untouched by the next batch
  CHECK(notification_batch{}.empty());
  CHECK(out.finish(3).empty());
}

TEST_CASE_FIXTURE(test::caf_fixture,
                  "batch: the wire form carries every notification and the generation") {
  notification_batch::builder out;
  out.add("a", "1", 10);
  out.add("b", std::string("\xFF\x00z", 3), -1);
  out.add("a", "3", 12);
  auto batch = out.finish(18446744073709551615u);
  for (auto sent : {batch, batch.first(2)}) {
    std::vector<char> bytes;
    caf::binary_serializer sink{sys, bytes};
    REQUIRE(!sink(sent));
    notification_batch received;
    caf::binary_deserializer source{sys, bytes};
    REQUIRE(!source(received));
    CHECK(texts(received) == texts(sent));
    CHECK(received.generation() == sent.generation());
  }
}

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

TEST_CASE("batch: a repeated channel name is stored once and a prefix is not taken for it") {
  notification_batch::builder out;
  out.add("ab", "1", 1);
  out.add("ab", "2", 2);  // the same name: shares its place
  out.add("a", "3", 3);   // a prefix of the last name
  out.add("ab", "4", 4);  // longer than the last name
  out.add("abc", "5", 5);
  out.add("abc", "6", 6);
  auto batch = out.finish(1);
  CHECK(texts(batch) == std::vector<std::string>{"ab/1/1@1", "ab/2/2@1", "a/3/3@1", "ab/4/4@1",
                                                 "abc/5/5@1", "abc/6/6@1"});
  CHECK(batch[0].channel.data() == batch[1].channel.data());
  CHECK(batch[4].channel.data() == batch[5].channel.data());
  CHECK(batch[2].channel.data() != batch[1].channel.data());
}

TEST_CASE("batch: the builder reuses a batch's buffer only once nobody holds the batch") {
  notification_batch::builder out;
  out.add("c", "first", 1);
  auto held = out.finish(1);
  const char* first_place = held.front().payload.data();
  out.add("c", "second", 2);
  auto second = out.finish(1);  // `held` still lives: a new buffer
  CHECK(second.front().payload.data() != first_place);
  CHECK(texts(held) == std::vector<std::string>{"c/first/1@1"});
  auto prefix = second.first(1);  // a prefix holds the buffer too
  second = notification_batch{};
  out.add("c", "third", 3);
  auto third = out.finish(2);
  CHECK(texts(prefix) == std::vector<std::string>{"c/second/2@1"});
  const char* third_place = third.front().payload.data();
  third = notification_batch{};
  out.add("c", "fourth", 4);
  auto fourth = out.finish(3);  // nobody held the third: its buffer again
  CHECK(fourth.front().payload.data() == third_place);
  CHECK(texts(fourth) == std::vector<std::string>{"c/fourth/4@3"});
}

# The TLS tests need a second host: a network namespace (root, and a kernel
# that allows it). Where it cannot be made they are excluded, and the run
# says why: an excluded test is reported as such, never as passing.
case Snakepit.Test.RemoteHost.available?() do
  :ok ->
    ExUnit.start()

  {:error, why} ->
    IO.puts("NOTE: the :netns tests (TLS to a worker on another host) are excluded: #{why}")
    ExUnit.start(exclude: [:netns])
end

defmodule Snakepit.Test.Eventually do
  @moduledoc false
  # Polls for asynchronous outcomes (streams, workers, OS processes).

  import ExUnit.Assertions, only: [flunk: 1]

  @doc """
  Calls `fun` until it returns a truthy value and returns that value; flunks
  after `:tries` calls (default 250), `:interval` ms apart (default 20).
  `:message` may be a string or a function of the last value.
  """
  def eventually(fun, opts \\ []) do
    poll(fun, Keyword.get(opts, :tries, 250), Keyword.get(opts, :interval, 20), opts[:message])
  end

  defp poll(fun, tries, interval, message) do
    case fun.() do
      falsy when falsy in [nil, false] and tries > 1 ->
        Process.sleep(interval)
        poll(fun, tries - 1, interval, message)

      falsy when falsy in [nil, false] ->
        flunk(describe(message, falsy))

      value ->
        value
    end
  end

  defp describe(nil, _), do: "condition never became true"
  defp describe(text, _) when is_binary(text), do: text
  defp describe(fun, last) when is_function(fun, 1), do: fun.(last)
end

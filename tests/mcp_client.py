"""Drives `mission-control mcp` with the Python MCP SDK (PyPI `mcp`), as tests/mcp.rs does.

Usage: mcp_client.py BIN URL AGENT_ID. Lists the tools, checks that every one has a
description and an input schema, claims a task without giving `agentId` (so the
`--agent-id` default applies), and prints the claimed task's JSON as its last line.
"""

import asyncio
import json
import sys

from mcp import ClientSession, StdioServerParameters
from mcp.client.stdio import stdio_client

TOOLS = {
    "claim_task", "heartbeat", "complete_task", "fail_task", "create_task",
    "cancel_task", "get_task", "list_tasks", "list_ventures",
}


async def main(binary: str, url: str, agent_id: str) -> None:
    params = StdioServerParameters(command=binary, args=["mcp", "--url", url, "--agent-id", agent_id])
    async with stdio_client(params) as (read, write):
        async with ClientSession(read, write) as session:
            await session.initialize()
            tools = (await session.list_tools()).tools
            names = {tool.name for tool in tools}
            assert names == TOOLS, f"tools: {sorted(names)}"
            for tool in tools:
                assert tool.description, f"{tool.name} has no description"
                assert tool.input_schema.get("type") == "object", f"{tool.name}: {tool.input_schema}"
            result = await session.call_tool("claim_task", {"leaseSeconds": 60})
            text = result.content[0].text
            assert not result.is_error, text
            print(f"{len(tools)} tools", file=sys.stderr)
            print(json.dumps(json.loads(text)))


if __name__ == "__main__":
    asyncio.run(main(*sys.argv[1:4]))
